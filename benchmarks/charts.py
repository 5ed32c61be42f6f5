"""Inline SVG charts for the HTML reports: line charts (rate-distortion), a scatter with its Pareto front
(quality against latency) and horizontal bars on a log scale (latency, where one slow reference would
flatten every other bar on a linear axis).

Hand-written SVG, no scripts and no library: the reports stay one self-contained file that opens
offline and prints (a pinned chart library would add ~200 KB of JavaScript to every report for a few
lines and dots). Every label is escaped. Output depends only on the inputs, so a report re-rendered from
its JSON is byte-for-byte the same.
"""

from __future__ import annotations

import math
from html import escape

W, H = 560, 320  # plot area of the x-y charts
ML, MR, MT, MB = 56, 16, 12, 44  # margins: left (y ticks), right, top, bottom (x ticks and label)
CHAR_W = 7
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac")


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round values (1, 2 or 5 × 10^k steps) covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    step = 10 ** math.floor(math.log10((hi - lo) / count))
    step *= next(m for m in (1, 2, 5, 10) if (hi - lo) / (step * m) <= count)
    start = math.floor(lo / step) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 2)
            if start + i * step <= hi + step * 1e-9]


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 × 10^k between lo and hi (only decades when the range is wide)."""
    marks = (1, 2, 5) if hi / lo < 1e3 else (1,)
    out = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10**k for m in marks if lo <= m * 10**k <= hi]
    return out


def fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"
    return f"{v:.3g}"


class Axes:
    """Maps data to the plot area, linear or log on each axis."""

    def __init__(self, xs: list[float], ys: list[float], xlog: bool = False, pad: float = 0.05):
        self.xlog = xlog
        lo, hi = min(xs), max(xs)
        if xlog:
            self.x0, self.x1 = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
            if self.x1 / self.x0 > 1e3:  # keep only what the data needs, a little beyond
                self.x0, self.x1 = lo / 1.3, hi * 1.3
        else:
            span = (hi - lo) or abs(hi) or 1.0
            self.x0, self.x1 = max(0.0, lo - pad * span) if lo >= 0 else lo - pad * span, hi + pad * span
        ylo, yhi = min(ys), max(ys)
        span = (yhi - ylo) or abs(yhi) or 1.0
        self.y0, self.y1 = ylo - pad * span, yhi + pad * span

    def x(self, v: float) -> float:
        if self.xlog:
            return ML + W * math.log(v / self.x0) / math.log(self.x1 / self.x0)
        return ML + W * (v - self.x0) / (self.x1 - self.x0)

    def y(self, v: float) -> float:
        return MT + H - H * (v - self.y0) / (self.y1 - self.y0)

    def frame(self, chart_id: str, x_label: str, y_label: str) -> list[str]:
        width, height = ML + W + MR, MT + H + MB
        out = [f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
               f'height="{height}" viewBox="0 0 {width} {height}">']
        xt = log_ticks(self.x0, self.x1) if self.xlog else nice_ticks(self.x0, self.x1)
        for t in (v for v in xt if self.x0 <= v <= self.x1):
            out.append(f'<line class="grid" x1="{self.x(t):.1f}" y1="{MT}" x2="{self.x(t):.1f}" y2="{MT + H}"/>'
                       f'<text class="tick" x="{self.x(t):.1f}" y="{MT + H + 16}" text-anchor="middle">{fmt(t)}</text>')
        for t in (v for v in nice_ticks(self.y0, self.y1) if self.y0 <= v <= self.y1):
            out.append(f'<line class="grid" x1="{ML}" y1="{self.y(t):.1f}" x2="{ML + W}" y2="{self.y(t):.1f}"/>'
                       f'<text class="tick" x="{ML - 6}" y="{self.y(t) + 4:.1f}" text-anchor="end">{fmt(t)}</text>')
        out.append(f'<rect class="frame" x="{ML}" y="{MT}" width="{W}" height="{H}" fill="none"/>')
        out.append(f'<text x="{ML + W / 2}" y="{MT + H + 36}" text-anchor="middle">{escape(x_label)}</text>')
        out.append(f'<text transform="translate(14 {MT + H / 2}) rotate(-90)" text-anchor="middle">'
                   f'{escape(y_label)}</text>')
        return out


def legend(items: list[tuple[str, str, bool]]) -> str:
    """(name, colour, dashed) as an HTML legend line."""
    return '<p class="legend">' + "".join(
        f'<span><i style="background:{c}{";opacity:.55" if dashed else ""}"></i>{escape(n)}</span>'
        for n, c, dashed in items) + "</p>"


def line_chart(chart_id: str, series: list[dict], x_label: str, y_label: str, empty: str = "No data.") -> str:
    """series: {"name", "points": [(x, y, tooltip)], "colour", "dashed"}; one polyline with markers each."""
    series = [s for s in series if s["points"]]
    if not series:
        return f'<p class="note">{escape(empty)}</p>'
    axes = Axes([p[0] for s in series for p in s["points"]], [p[1] for s in series for p in s["points"]])
    out = axes.frame(chart_id, x_label, y_label)
    for s in series:
        pts = sorted(s["points"])
        dash = ' stroke-dasharray="5 4"' if s.get("dashed") else ""
        out.append(f'<polyline fill="none" stroke="{s["colour"]}" stroke-width="2"{dash} points="'
                   + " ".join(f"{axes.x(x):.1f},{axes.y(y):.1f}" for x, y, _ in pts) + '"/>')
        for x, y, tip in pts:
            out.append(f'<circle cx="{axes.x(x):.1f}" cy="{axes.y(y):.1f}" r="3.5" fill="{s["colour"]}">'
                       f'<title>{escape(s["name"])}: {escape(tip)}</title></circle>')
    return legend([(s["name"], s["colour"], bool(s.get("dashed"))) for s in series]) + "\n".join(out + ["</svg>"])


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower x = faster, higher y = better)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def pareto_chart(chart_id: str, points: list[dict], x_label: str, y_label: str) -> str:
    """points: {"label", "x" (latency, log axis), "y" (quality), "colour"}; the Pareto front is joined and
    its points ringed and labelled."""
    if not points:
        return "<p>No data.</p>"
    axes = Axes([p["x"] for p in points], [p["y"] for p in points], xlog=True, pad=0.12)
    out = axes.frame(chart_id, x_label, y_label)
    front = pareto_front([(p["x"], p["y"]) for p in points])
    out.append('<polyline class="front" fill="none" stroke="#222" stroke-width="1.5" stroke-dasharray="3 3" points="'
               + " ".join(f"{axes.x(points[i]['x']):.1f},{axes.y(points[i]['y']):.1f}" for i in front) + '"/>')
    for i, p in enumerate(points):
        on = i in front
        ring = ' stroke="#222" stroke-width="2"' if on else ""
        out.append(f'<circle cx="{axes.x(p["x"]):.1f}" cy="{axes.y(p["y"]):.1f}" r="{5 if on else 4}" '
                   f'fill="{p["colour"]}"{ring}>'
                   f'<title>{escape(p["label"])}: {fmt(p["x"])} ms, {p["y"]:.2f} dB'
                   f'{" (Pareto front)" if on else ""}</title></circle>')
    for n, i in enumerate(front, 1):  # number the front; the list under the chart names them
        p = points[i]
        out.append(f'<text class="point" x="{axes.x(p["x"]) + 7:.1f}" y="{axes.y(p["y"]) - 7:.1f}">{n}</text>')
    colours = list(dict.fromkeys((p["legend"], p["colour"]) for p in points if p.get("legend")))
    names = "".join(f"<li>{escape(points[i]['label'])}: {fmt(points[i]['x'])} ms, {points[i]['y']:.2f} dB</li>"
                    for i in front)
    return (legend([(n, c, False) for n, c in colours]) + "\n".join(out + ["</svg>"])
            + f'<p class="note">Pareto front, fastest first:</p><ol class="front">{names}</ol>')


def log_bars(chart_id: str, rows: list[tuple[str, float, str, str]], unit: str) -> str:
    """Horizontal bars on a log axis: (label, value, colour, tooltip). A 3 s reference beside 20 ms rows
    stays readable: each decade gets the same width."""
    rows = [r for r in rows if r[1] and r[1] > 0]
    if not rows:
        return "<p>No data.</p>"
    # the axis starts at a round value about half the smallest bar, so the shortest bar still shows
    smallest = min(v for _, v, _, _ in rows) * 0.5
    k = math.floor(math.log10(smallest))
    lo = max(m * 10**k for m in (1, 2, 5) if m * 10**k <= smallest)
    largest = max(v for _, v, _, _ in rows) * 1.05
    k = math.floor(math.log10(largest))
    hi = min(m * 10**k for m in (1, 2, 5, 10) if m * 10**k >= largest)
    label_w = CHAR_W * max(len(r[0]) for r in rows) + 16
    plot_w, row_h, bar_h, axis_h, value_w = 480, 24, 14, 22, 90
    height = axis_h + row_h * len(rows) + 6

    def x(v: float) -> float:
        return label_w + plot_w * math.log(v / lo) / math.log(hi / lo)

    out = [f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + value_w}" '
           f'height="{height}" viewBox="0 0 {label_w + plot_w + value_w} {height}">']
    for t in log_ticks(lo, hi):
        out.append(f'<line class="grid" x1="{x(t):.1f}" y1="{axis_h - 4}" x2="{x(t):.1f}" y2="{height}"/>'
                   f'<text class="tick" x="{x(t):.1f}" y="{axis_h - 8}" text-anchor="middle">{fmt(t)}</text>')
    for i, (label, value, colour, tip) in enumerate(rows):
        y = axis_h + i * row_h + (row_h - bar_h) / 2
        end = max(x(value), label_w + 1.0)
        out.append(f'<text x="{label_w - 8}" y="{y + bar_h - 3}" text-anchor="end">{escape(label)}</text>'
                   f'<rect x="{label_w}" y="{y:.1f}" width="{end - label_w:.1f}" height="{bar_h}" fill="{colour}">'
                   f'<title>{escape(tip)}</title></rect>'
                   f'<text x="{end + 5:.1f}" y="{y + bar_h - 3}">{escape(fmt(value))} {escape(unit)}</text>')
    return "\n".join(out + ["</svg>"])


__all__ = ["PALETTE", "legend", "line_chart", "log_bars", "nice_ticks", "pareto_chart", "pareto_front"]
