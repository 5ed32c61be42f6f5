"""The pipeline's report as one self-contained HTML page (`RUN_DIR/report.html`, `edgecodec report RUN_DIR`),
and the rate-distortion page of an eval run (`eval --html`).

Everything is drawn from the run's JSON (report.json): re-rendering it gives the same bytes. Charts are
inline SVG (edgecodec.benchmarks.charts), so the page opens offline and prints; wide tables scroll inside
their own box instead of widening the page.
"""

from __future__ import annotations

from html import escape

from edgecodec.benchmarks.charts import PALETTE, line_chart, log_bars, pareto_chart
from edgecodec.benchmarks.html import CSS as BENCH_CSS
from edgecodec.benchmarks.html import stage_chart, table_html
from edgecodec.benchmarks.machine import contention_warning, machine_line

CSS = BENCH_CSS + """
.scroll { overflow-x: auto; max-width: 100%; }
.pass { color: #1a7f37; font-weight: 600; } .fail { color: #c62828; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 1.5em; } .charts > div { flex: 1 1 420px; min-width: 0; }
svg .frame { stroke: #999; } svg text.point { font-size: 11px; }
pre { background: #f6f6f6; padding: .6em .8em; overflow-x: auto; white-space: pre-wrap; }
@media print { .scroll { overflow: visible; } h2 { break-after: avoid; } svg { break-inside: avoid; } }
"""
BASELINE_COLOURS = {"jpeg": "#7f7f7f", "webp": "#bcbd22"}


def page(title: str, body: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{escape(title)}</title>\n'
            f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{escape(title)}</h1>\n" + "\n".join(body)
            + "\n</body>\n</html>\n")


def scroll(html: str) -> str:
    return f'<div class="scroll">{html}</div>'


# --- rate-distortion ---------------------------------------------------------------------------------

def rd_series(variants: list[tuple[str, list[dict]]], baselines: dict | None, metric: str) -> list[dict]:
    """One series per (name, per-rate rows with bpp and the metric), then JPEG and WebP dashed."""
    series = []
    for i, (name, rows) in enumerate(variants):
        pts = [(r["bpp"], r[metric], f"rate {r['rate']}: {r['bpp']:.4f} bpp, {r[metric]:.4g}")
               for r in rows if r.get(metric) is not None]
        series.append({"name": name, "colour": PALETTE[i % len(PALETTE)], "points": pts})
    for fmt, rows in (baselines or {}).items():
        pts = [(r["bpp"], r[metric], f"quality {r['quality']}: {r['bpp']:.4f} bpp, {r[metric]:.4g}")
               for r in rows if r.get(metric) is not None]
        series.append({"name": f"{fmt.upper()} (Pillow)", "colour": BASELINE_COLOURS.get(fmt, "#999"),
                       "points": pts, "dashed": True})
    return series


def rd_charts(prefix: str, variants, baselines) -> str:
    return ('<div class="charts"><div>'
            + line_chart(f"{prefix}-rd-psnr", rd_series(variants, baselines, "psnr"), "bits per pixel (whole file)",
                         "PSNR (dB, 8-bit RGB)")
            + "</div><div>"
            + line_chart(f"{prefix}-rd-msssim", rd_series(variants, baselines, "ms_ssim"),
                         "bits per pixel (whole file)", "MS-SSIM",
                         empty="No MS-SSIM: it needs images of at least 161 pixels on the short side.")
            + "</div></div>")


def deployed_variants(report: dict) -> list[tuple[str, list[dict]]]:
    """The decoders a reader chooses between: teacher FP32 and the deployed model FP32 in torch, each INT8
    bundle on the OpenVINO CPU runtime (else its first runtime)."""
    rows = (report.get("quality") or {}).get("rows", [])
    out = []
    for role, name in (("teacher", report["teacher"]["name"]), ("deployed", report["model"]["name"])):
        mine = [r for r in rows if r["bundle"] == "torch" and r["role"] == role]
        if mine:
            out.append((f"{name} FP32" + (" (teacher)" if role == "teacher" else ""), mine))
    for bundle in dict.fromkeys(r["bundle"] for r in rows if r["precision"] == "int8"):
        runtimes = list(dict.fromkeys(r["runtime"] for r in rows if r["bundle"] == bundle))
        runtime = "openvino-cpu" if "openvino-cpu" in runtimes else runtimes[0]
        out.append((f"{report['model']['name']} {bundle} ({runtime})",
                    [r for r in rows if r["bundle"] == bundle and r["runtime"] == runtime]))
    return out


# --- speed -------------------------------------------------------------------------------------------

def bench_label(r: dict) -> str:
    bundle = (r.get("bundle") or "").rstrip("/").rsplit("/", 1)[-1]
    return f"{r['runtime']} · {r.get('model') or '?'} · {bundle or 'torch eager'}"


def pareto_points(report: dict) -> list[dict]:
    """One point per runtime × bundle that has both a latency (bench) and a quality (verify): mean decode
    latency against mean PSNR over the rates."""
    bench = report.get("bench") or {}
    rows = (report.get("quality") or {}).get("rows", [])
    names = {path.rstrip("/").rsplit("/", 1)[-1]: label for label, path in (report.get("bundles") or {}).items()}
    colours = {"teacher": "#4c78a8", "fp32": "#f58518", "int8": "#54a24b"}
    points = []
    for r in bench.get("results", []):
        if "error" in r:
            continue
        label = names.get((r.get("bundle") or "").rstrip("/").rsplit("/", 1)[-1], "torch")
        role = "teacher" if label in ("teacher-fp32", "torch") else "deployed"
        mine = [q for q in rows if q["bundle"] == label and q["runtime"] == r["runtime"]
                and (label != "torch" or q["role"] == role)]
        if not mine:
            continue
        kind = "teacher" if role == "teacher" else ("int8" if str(r["precision"]).startswith("int8") else "fp32")
        model = report["teacher"]["name"] if role == "teacher" else report["model"]["name"]
        points.append({"label": f"{model} {label} · {r['runtime']}", "x": r["latency_ms"]["mean"],
                       "y": sum(q["psnr"] for q in mine) / len(mine), "colour": colours[kind],
                       "legend": {"teacher": f"{model} (teacher)", "fp32": f"{model} FP32",
                                  "int8": f"{model} INT8"}[kind]})
    return points


def speed_sections(bench: dict) -> list[str]:
    ok = [r for r in bench.get("results", []) if "error" not in r]
    if not ok:
        return ["<p>No runtime produced a latency.</p>"]
    colour = {"fp32": "#4c78a8", "int8": "#54a24b", "fp16": "#f58518"}
    pick = lambda r: colour.get(str(r["precision"]).split("+")[0], "#9d9d9d")  # noqa: E731
    lat = [(bench_label(r), r["latency_ms"]["mean"], pick(r),
            f"mean {r['latency_ms']['mean']:.1f} ms, p50 {r['latency_ms'].get('p50') or 0:.1f}, "
            f"p90 {r['latency_ms'].get('p90') or 0:.1f} on {r.get('actual_device')}") for r in ok]
    mem = [(bench_label(r), r.get("peak_rss_mb"), pick(r), "peak resident set of the worker process")
           for r in ok if r.get("peak_rss_mb")]
    flops = [(bench_label(r), r.get("gflops_per_s"), pick(r), f"{r.get('gflops') or 0:.2f} GFLOPs per decode")
             for r in ok if r.get("gflops_per_s")]
    return [
        "<h2>Decode latency</h2>",
        '<p class="note">Steady-state mean of the timed decodes, log scale: every decade has the same width, so a '
        "slow reference does not flatten the rest. Blue FP32, green INT8.</p>",
        scroll(log_bars("latency-log", lat, "ms")),
        "<h2>Stage medians</h2>", scroll(stage_chart(ok, True)),
        "<h2>Memory</h2>", scroll(log_bars("memory", mem, "MB")),
        "<h2>Achieved compute</h2>",
        '<p class="note">GFLOP/s = the decode graph\'s FLOPs (2 × MAC, counted on the meta device) over the mean '
        "latency. The bench does not measure this machine's peak FLOP/s, so no fraction of peak is given.</p>",
        scroll(log_bars("gflops", flops, "GFLOP/s")),
        "<h2>Latency table</h2>", scroll(table_html(bench)),
    ]


# --- the pages ---------------------------------------------------------------------------------------

def recipe_toml(recipe: dict) -> str:
    """The recipe as TOML (what `edgecodec pipeline --recipe` reads), values in JSON notation."""
    import json

    return "\n".join(f"{k} = {json.dumps(v)}" for k, v in recipe.items() if v is not None)


def to_html(report: dict) -> str:
    m, t = report["model"], report["teacher"]
    warning = contention_warning((report.get("bench") or {}).get("machine") or report["machine"])
    checks = report.get("checks", [])
    failed = [c for c in checks if not c["passed"]]
    body = [
        f"<p><b>Deployed:</b> {escape(m['name'])} ({escape(str(m['source']))}), distilled from / measured against "
        f"<b>{escape(t['name'])}</b>; fingerprint {escape(m['fingerprint'])}. <b>Sizes:</b> "
        + ", ".join(f"{h}×{w}" for h, w in report["sizes"])
        + f". <b>Images:</b> {escape(', '.join(i['name'] for i in report['images']))}. "
        f"<b>Wall time:</b> {report['wall_s']:.0f} s.</p>",
        f"<p><b>Machine:</b> {escape(machine_line(report['machine']))}</p>",
        *([f'<p class="warn"><b>Warning:</b> {escape(warning)}.</p>'] if warning else []),
        f'<p><b>Result:</b> <span class="{"fail" if failed else "pass"}">'
        f'{f"{len(failed)} of {len(checks)} checks FAILED" if failed else f"all {len(checks)} checks passed"}'
        "</span></p>",
        "<h2>Rate–distortion</h2>",
        '<p class="note">Every image encoded at every rate by the teacher\'s encoder, decoded by each variant; '
        "JPEG and WebP (Pillow, lowest quality settings) measured on the same images. Mean over the images.</p>",
        rd_charts("pipeline", deployed_variants(report), report.get("baselines")),
    ]
    points = pareto_points(report)
    if points:
        body += ["<h2>Quality against latency</h2>",
                 '<p class="note">One point per runtime and bundle: mean decode latency (log scale) against mean '
                 "PSNR over the rates. Ringed and joined: the Pareto front (nothing else is both faster and "
                 "better).</p>", scroll(pareto_chart("pareto", points, "decode latency (ms, log scale)",
                                                     "PSNR (dB), mean over rates"))]
    gf = report.get("gflops") or {}
    if gf:
        stages = list(dict.fromkeys(k for g in gf.values() for k in g))
        h, w = report["sizes"][0]
        body += [f"<h2>GFLOPs per decode at {h}×{w}</h2>", scroll(
            "<table><thead><tr><th>model</th>" + "".join(f'<th class="num">{escape(s)}</th>' for s in stages)
            + "</tr></thead><tbody>" + "".join(
                f"<tr><td>{escape(t['name'] if role == 'teacher' else m['name'])}</td>"
                + "".join(f'<td class="num">{g.get(s, 0.0):.2f}</td>' for s in stages) + "</tr>"
                for role, g in gf.items() if role == "teacher" or m["name"] != t["name"]) + "</tbody></table>")]
    if report.get("bench"):
        body += speed_sections(report["bench"])
    rows = (report.get("quality") or {}).get("rows", [])
    if rows:
        head = ("bundle", "model", "runtime", "device", "rate", "bpp", "PSNR", "MS-SSIM", "vs own FP32", "vs teacher")
        body += ["<h2>Quality per bundle, runtime and rate</h2>", scroll(
            "<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>" + "".join(
                "<tr>" + "".join(f"<td>{escape(str(v))}</td>" for v in (
                    r["bundle"], r["model"], r["runtime"], r["device"], r["rate"], f"{r['bpp']:.4f}",
                    f"{r['psnr']:.2f}", "–" if r.get("ms_ssim") is None else f"{r['ms_ssim']:.4f}",
                    f"{r['psnr_vs_fp32_reference']:.1f}", f"{r['psnr_vs_teacher']:.1f}")) + "</tr>" for r in rows)
            + "</tbody></table>")]
    body += ["<h2>Checks</h2>", "<ul>"] + [
        f'<li><span class="{"pass" if c["passed"] else "fail"}">{"PASS" if c["passed"] else "FAIL"}</span> '
        f'{escape(c["check"])}' + (f" ({escape(str(c['value']))})" if c.get("value") is not None else "") + "</li>"
        for c in checks] + ["</ul>"]
    body += ["<h2>Steps</h2>", scroll("<table><thead><tr><th>step</th><th>status</th><th class=\"num\">seconds</th>"
                                      "</tr></thead><tbody>" + "".join(
        f"<tr><td>{escape(s['step'])}</td><td>{escape(s['status'] + (': ' + s['error'] if s.get('error') else ''))}"
        f'</td><td class="num">{s["seconds"]:.1f}</td></tr>' for s in report["steps"]) + "</tbody></table>")]
    body += ["<h2>Reproduce</h2>", "<p>The recipe this run used (<code>recipe.toml</code>), then:</p>",
             f"<pre>{escape(recipe_toml(report['recipe']))}</pre>",
             "<pre>edgecodec pipeline --recipe recipe.toml -o RUN_DIR    # the run\n"
             "edgecodec report RUN_DIR                               # this page again, from RUN_DIR/report.json</pre>"]
    return page("edgecodec pipeline report", body)


def eval_to_html(result: dict, baselines: dict | None) -> str:
    """`eval --html`: the RD charts of one eval run (with JPEG/WebP on the same images) and its table."""
    model, runtime = result["model"], result["runtime"]
    body = [f"<p><b>Model:</b> {escape(model['name'])} ({escape(str(model['source']))}); <b>runtime:</b> "
            f"{escape(runtime['backend'])} on {escape(str(runtime['device']))} ({escape(str(runtime['precision']))}); "
            f"<b>images:</b> {len({r['name'] for r in result['images']})}.</p>",
            "<h2>Rate–distortion</h2>",
            rd_charts("eval", [(model["name"], result["per_rate"])], baselines),
            "<h2>Per rate</h2>", scroll(
                "<table><thead><tr><th>rate</th><th>bpp</th><th>PSNR</th><th>MS-SSIM</th></tr></thead><tbody>"
                + "".join(f'<tr><td>{r["rate"]}</td><td class="num">{r["bpp"]:.4f}</td><td class="num">'
                          f'{r["psnr"]:.2f}</td><td class="num">'
                          f'{"–" if r["ms_ssim"] is None else format(r["ms_ssim"], ".4f")}</td></tr>'
                          for r in result["per_rate"]) + "</tbody></table>")]
    return page("edgecodec eval report", body)


__all__ = ["eval_to_html", "to_html"]
