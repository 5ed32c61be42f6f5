"""The benchmark report as one self-contained HTML page: the Markdown report's facts and tables plus two
bar charts (mean latency with its p50-p90 spread, and the per-stage medians).

Hand-written inline SVG and CSS, no scripts or external files, so the page opens anywhere (a CI artifact,
an air-gapped board) and adds no dependency. Every string from the report is escaped.
"""

from __future__ import annotations

import math
from html import escape

from .machine import contention_warning, machine_line
from .report import (STAGES, TITLE, _ms, bundle_label, header_facts, latency_rows, report_bundles,
                     size_label)

PRECISION_COLOURS = {"fp32": "#4c78a8", "fp16": "#f58518", "int8": "#54a24b"}
OTHER_COLOUR = "#9d9d9d"
STAGE_COLOURS = ("#4c78a8", "#b279a2", "#e45756", "#72b7b2")  # in STAGES order

ROW_H, BAR_H, AXIS_H, PLOT_W, VALUE_W, CHAR_W = 24, 14, 22, 560, 90, 7

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
.warn { background: #fff3cd; border-left: 4px solid #e0a800; padding: .5em .8em; }
.note { color: #555; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg .tick { fill: #777; } svg line.grid { stroke: #e4e4e4; } svg line.whisker { stroke: #222; }
.legend span { display: inline-block; margin-right: 1.2em; }
.legend i { display: inline-block; width: .9em; height: .9em; margin-right: .35em; vertical-align: -.1em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .6em; white-space: nowrap; }
th { background: #f4f4f4; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
"""


def _ticks(top: float) -> list[float]:
    """Round grid values (1, 2 or 5 × 10^k) up to `top`: at most 5, readable whatever the range."""
    step = 10 ** math.floor(math.log10(top / 4))
    step *= next(m for m in (1, 2, 5, 10) if top / (step * m) <= 5)
    return [i * step for i in range(1, int(top / step + 1e-9) + 1)]


def _bars_svg(chart_id: str, rows: list[tuple[str, list[tuple[float, str, str]], tuple | None, str]]) -> str:
    """Horizontal bars, one row each: (label, segments (ms, colour, tooltip) stacked left to right, whisker
    (low, high) ms or None, text at the bar's end). Linear scale to the largest bar or whisker end; short
    bars stay visible and the written value carries the number."""
    top = max(max(sum(v for v, _, _ in segs), whisker[1] if whisker else 0) for _, segs, whisker, _ in rows)
    top = top or 1.0
    label_w = CHAR_W * max(len(label) for label, *_ in rows) + 16
    height = AXIS_H + ROW_H * len(rows) + 6

    def x(ms: float) -> float:
        return label_w + PLOT_W * ms / top

    out = [f'<svg id="{chart_id}" xmlns="http://www.w3.org/2000/svg" width="{label_w + PLOT_W + VALUE_W}" '
           f'height="{height}" viewBox="0 0 {label_w + PLOT_W + VALUE_W} {height}">']
    for t in [0, *_ticks(top)]:
        out.append(f'<line class="grid" x1="{x(t):.1f}" y1="{AXIS_H - 4}" x2="{x(t):.1f}" y2="{height}"/>'
                   f'<text class="tick" x="{x(t):.1f}" y="{AXIS_H - 8}" text-anchor="middle">'
                   f'{_ms(t) if t else 0}</text>')
    for i, (label, segs, whisker, value) in enumerate(rows):
        y = AXIS_H + i * ROW_H + (ROW_H - BAR_H) / 2
        out.append(f'<text x="{label_w - 8}" y="{y + BAR_H - 3}" text-anchor="end">{escape(label)}</text>')
        left, end = 0.0, label_w
        for ms, colour, tip in segs:
            w = max(PLOT_W * ms / top, 1.0)  # 100 ms next to 10 s is under 6 px: keep at least a sliver
            out.append(f'<rect x="{x(left):.1f}" y="{y:.1f}" width="{w:.1f}" height="{BAR_H}" fill="{colour}">'
                       f'<title>{escape(tip)}</title></rect>')
            left, end = left + ms, x(left) + w
        if whisker:
            lo, hi, mid = x(whisker[0]), x(whisker[1]), y + BAR_H / 2
            out.append(f'<line class="whisker" x1="{lo:.1f}" y1="{mid}" x2="{hi:.1f}" y2="{mid}"/>'
                       + "".join(f'<line class="whisker" x1="{v:.1f}" y1="{mid - 4}" x2="{v:.1f}" y2="{mid + 4}"/>'
                                 for v in (lo, hi)))
            end = max(end, hi)
        out.append(f'<text x="{end + 5:.1f}" y="{y + BAR_H - 3}">{escape(value)}</text>')
    return "\n".join(out + ["</svg>"])


def _legend(items) -> str:
    return ('<p class="legend">' + "".join(f'<span><i style="background:{colour}"></i>{escape(name)}</span>'
                                           for name, colour in items) + "</p>")


def _row_label(r: dict, several: bool) -> str:
    # the bundle only tells rows apart when several were measured; the torch reference reads none
    bundle = bundle_label(r) if several and r.get("bundle") else None
    return " · ".join(p for p in (r["runtime"], bundle, str(r["precision"]), size_label(r)) if p)


def latency_chart(ok: list[dict], several: bool) -> str:
    rows = []
    for r in ok:
        lat = r["latency_ms"]
        colour = PRECISION_COLOURS.get(r["precision"], OTHER_COLOUR)
        high = lat.get("p90") if lat.get("p90") is not None else lat.get("p99")
        whisker = (lat["p50"], high) if lat.get("p50") is not None and high is not None else None
        tip = f"mean {_ms(lat['mean'])} ms, p50 {_ms(lat.get('p50'))} ms, p90 {_ms(lat.get('p90'))} ms, " \
              f"p99 {_ms(lat.get('p99'))} ms"
        rows.append((_row_label(r, several), [(lat["mean"], colour, tip)], whisker, f"{_ms(lat['mean'])} ms"))
    precisions = dict.fromkeys(str(r["precision"]) for r in ok)
    return (_legend((p, PRECISION_COLOURS.get(p, OTHER_COLOUR)) for p in precisions)
            + '\n<p class="note">Bar: steady-state mean of the timed decodes (ms); whisker: p50 to p90.</p>\n'
            + _bars_svg("latency-chart", rows))


def stage_chart(ok: list[dict], several: bool) -> str:
    rows = []
    for r in ok:
        st = r.get("stages_ms") or {}
        segs = [(st[key], colour, f"{label}: {_ms(st[key])} ms")
                for (key, label), colour in zip(STAGES, STAGE_COLOURS) if st.get(key) is not None]
        total = sum(v for v, _, _ in segs)
        rows.append((_row_label(r, several), segs, None, f"{_ms(total)} ms" if segs else "–"))
    return (_legend((label, colour) for (_, label), colour in zip(STAGES, STAGE_COLOURS))
            + '\n<p class="note">Medians of each stage over the timed decodes (ms), stacked.</p>\n'
            + _bars_svg("stage-chart", rows))


def table_html(report: dict) -> str:
    columns, rows = latency_rows(report)

    def cells(tag: str, values) -> str:
        num = ' class="num"'
        return "".join(f"<{tag}{num if numeric else ''}>{escape(v)}</{tag}>"
                       for v, (_, numeric) in zip(values, columns))

    return ("<table>\n<thead><tr>" + cells("th", [title for title, _ in columns]) + "</tr></thead>\n<tbody>\n"
            + "\n".join(f"<tr>{cells('td', row)}</tr>" for row in rows) + "\n</tbody>\n</table>")


def to_html(report: dict) -> str:
    results, bundles, facts = report["results"], report_bundles(report), header_facts(report)
    ok = [r for r in results if "error" not in r]
    failed = [r for r in results if "error" in r]
    several = len(bundles) > 1
    warning = contention_warning(report["machine"])
    parts = [
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{TITLE}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{TITLE}</h1>",
        f"<p><b>Machine:</b> {escape(machine_line(report['machine']))}</p>",
        *([f'<p class="warn"><b>Warning:</b> {escape(warning)}.</p>'] if warning else []),
        f"<p><b>{'Bundles' if several else 'Bundle'}:</b> "
        + "; ".join(f"<code>{escape(str(b['path']))}</code> ({escape(str(b['precision']))})" for b in bundles)
        + f", {escape(facts['model'])}. <b>Input:</b> {escape(facts['input'])} "
        f"<b>Method:</b> {escape(facts['method'])}</p>",
    ]
    if ok:
        parts += ["<h2>Decode latency</h2>", latency_chart(ok, several),
                  "<h2>Stage medians</h2>", stage_chart(ok, several)]
    else:
        parts.append("<p>No runtime produced a latency.</p>")
    parts += ["<h2>Latency table</h2>", f'<div style="overflow-x:auto">{table_html(report)}</div>']
    if failed:
        parts += ["<h2>Runtimes that did not run</h2>", "<ul>"]
        parts += [f"<li><b>{escape(str(r['runtime']))}</b> {escape(size_label(r))}: {escape(str(r['error']))}</li>"
                  for r in failed]
        parts.append("</ul>")
    if report.get("skipped_runtimes"):
        parts += ["<h2>Not measured</h2>", "<p>Unusable here, or no graph of their format in a bundle:</p>", "<ul>"]
        parts += [f"<li>{escape(str(name))}: {escape(str(why))}</li>"
                  for name, why in report["skipped_runtimes"].items()]
        parts.append("</ul>")
    return "\n".join(parts + ["</body>\n</html>\n"])
