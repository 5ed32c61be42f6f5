"""The benchmark report: one JSON schema (machine + results) and its Markdown rendering (HTML: html.py).

Result entries always carry the contract keys, in this order (null where a runtime failed, with a
one-line "error"):

    runtime, precision, size [H, W], latency_ms {mean, p50, p90, p99, ...}, first_inference_ms,
    compile_ms, stages_ms {parse_ms, noise_ms, graph_ms, post_ms}, peak_rss_mb, gflops, gflops_per_s,
    actual_device

gflops_per_s divides the graph's GFLOPs by the steady-state mean of the whole decode;
graph_gflops_per_s by the median of the graph stage alone. speedup_vs_torch is the torch reference's
mean over this runtime's mean, both measured in the same run at the same size.
"""

from __future__ import annotations

import json

from .machine import contention_warning, machine_line

SCHEMA = "edgecodec-bench/1"
TITLE = "edgecodec decode latency"
REFERENCE = "torch-cpu"
CONTRACT_KEYS = ("runtime", "precision", "size", "latency_ms", "first_inference_ms", "compile_ms", "stages_ms",
                 "peak_rss_mb", "gflops", "gflops_per_s", "actual_device")
LEADING_KEYS = CONTRACT_KEYS[:6] + ("read_ms",) + CONTRACT_KEYS[6:10] + (
    "graph_gflops_per_s", "actual_device", "providers", "speedup_vs_torch", "speedup_vs_fp32", "error")
STAGES = (("parse_ms", "parse + entropy"), ("noise_ms", "noise"), ("graph_ms", "graph"), ("post_ms", "post"))


def finish_result(r: dict, reference: dict | None, fp32: dict | None = None) -> dict:
    """Derived numbers (GFLOP/s, ratios to the reference and to the same runtime's FP32 bundle) and
    the contract keys, in a stable order."""
    ok = "error" not in r and r.get("latency_ms")
    gflops = r.get("gflops")
    if ok and gflops is not None:
        r["gflops_per_s"] = gflops / (r["latency_ms"]["mean"] / 1e3)
        graph_ms = (r.get("stages_ms") or {}).get("graph_ms")
        r["graph_gflops_per_s"] = gflops / (graph_ms / 1e3) if graph_ms else None
    if ok and reference is not None and "error" not in reference:
        r["speedup_vs_torch"] = reference["latency_ms"]["mean"] / r["latency_ms"]["mean"]
    if ok and fp32 is not None and "error" not in fp32:
        r["speedup_vs_fp32"] = fp32["latency_ms"]["mean"] / r["latency_ms"]["mean"]
    for k in CONTRACT_KEYS:
        r.setdefault(k, None)
    ordered = {k: r[k] for k in LEADING_KEYS if k in r}
    ordered.update({k: v for k, v in r.items() if k not in ordered})
    return ordered


def _bundle_json(path, manifest: dict) -> dict:
    model = manifest.get("model") or {}
    return {"path": str(path), "model": model.get("name"), "source": model.get("source"),
            "fingerprint": model.get("fingerprint"), "precision": manifest.get("precision"),
            "graphs": [list(g["size"]) for g in manifest.get("graphs") or []]}


def build_report(machine: dict, config: dict, manifests: dict | list[dict], results: list[dict],
                 skipped: dict[str, str] | None = None, paths: list[str] | None = None) -> dict:
    """`manifests`: the bundles' manifests (one dict for a single bundle); `paths` their directories."""
    manifests = [manifests] if isinstance(manifests, dict) else list(manifests)
    paths = paths or [config.get("bundle")] * len(manifests)
    refs = {tuple(r["size"]): r for r in results if r.get("runtime") == REFERENCE and "error" not in r}
    # ×fp32: the same runtime on the same model's FP32 bundle (a student's INT8 against the student's FP32);
    # with several FP32 bundles of one model, the first listed is the baseline
    fp32: dict = {}
    for r in results:
        if r.get("bundle_precision", r.get("precision")) == "fp32" and "error" not in r:
            fp32.setdefault((r.get("model"), r["runtime"], tuple(r["size"])), r)
    bundles = [_bundle_json(p, m) for p, m in zip(paths, manifests)]
    return {
        "schema": SCHEMA,
        "machine": machine,
        "bundle": bundles[0],
        "bundles": bundles,
        "config": config,
        "reference": REFERENCE,
        "skipped_runtimes": dict(skipped or {}),  # runtimes (or runtime, bundle pairs) left out, with the reason
        "results": [finish_result(dict(r), refs.get(tuple(r["size"])),
                                  fp32.get((r.get("model"), r["runtime"], tuple(r["size"])))) for r in results],
    }


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"


def _ms(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def _num(v, fmt: str = "{:.1f}") -> str:
    return "–" if v is None else fmt.format(v)


def bundle_label(r: dict) -> str:
    """A result's bundle as its directory name; torch's reference reads no bundle."""
    from pathlib import PurePath

    return PurePath(r["bundle"]).name if r.get("bundle") else "–"


def size_label(r: dict) -> str:
    return f"{r['size'][0]}x{r['size'][1]}"


def report_bundles(report: dict) -> list[dict]:
    """The bundles measured; reports from before multi-bundle runs only have "bundle"."""
    return report.get("bundles") or [report["bundle"]]


def header_facts(report: dict) -> dict[str, str]:
    """The sentences above the tables (model, input, method), shared by the Markdown and HTML reports."""
    cfg, results, first = report["config"], report["results"], report_bundles(report)[0]
    rates = sorted({r.get("rate") for r in results if r.get("rate") is not None})
    stream = {tuple(r["size"]): r.get("stream_bytes") for r in results}
    return {
        "model": f"model {first['model']} (fingerprint {first['fingerprint']})",
        "input": f"a synthetic .edc drawn from the model's prior, rate {', '.join(map(str, rates))} ("
                 + ", ".join(f"{h}x{w}: {n} bytes" for (h, w), n in stream.items()) + ").",
        "method": f"each runtime in a fresh process, in turn, on the same stream; first decode timed alone, "
                  f"then {cfg['warmup']} warm-up and {cfg['runs']} timed decodes"
                  + (f"; {cfg['rounds']} rounds in alternating order, timings pooled"
                     if cfg.get("rounds", 1) > 1 else "")
                  + (f"; threads={cfg['threads']} asked of every runtime." if cfg.get("threads")
                     else "; each runtime's default thread count."),
    }


def latency_rows(report: dict) -> tuple[list[tuple[str, bool]], list[list[str]]]:
    """The main table's columns (title, numeric) and its cells: one row per runtime, bundle and size that
    ran. The bundle column only appears when several bundles were measured."""
    several = len(report_bundles(report)) > 1
    columns = [("runtime", False)] + ([("bundle", False)] if several else []) + [
        ("precision", False), ("size", False), *((f"{c} ms", True) for c in ("mean", "p50", "p90", "p99")),
        ("first inference ms", True), ("read ms", True), ("compile ms", True), ("peak RSS MB", True),
        ("GFLOP/s", True), ("device", False), (f"×{REFERENCE}", True), ("×fp32", True)]
    encodes = any("encode_ms" in r for r in report["results"])
    if encodes:  # bench --encode
        columns.append(("encode mean ms", True))
    rows = []
    for r in report["results"]:
        if "error" in r:
            continue
        lat = r["latency_ms"]
        rows.append([r["runtime"], *([bundle_label(r)] if several else []), r["precision"], size_label(r),
                     *(_ms(lat[k]) for k in ("mean", "p50", "p90", "p99")), _ms(r["first_inference_ms"]),
                     _ms(r.get("read_ms")), _ms(r["compile_ms"]), _num(r["peak_rss_mb"], "{:.0f}"),
                     _num(r["gflops_per_s"]), str(r["actual_device"]), _num(r.get("speedup_vs_torch"), "{:.2f}"),
                     _num(r.get("speedup_vs_fp32"), "{:.2f}")])
        if encodes:
            rows[-1].append(_ms((r.get("encode_ms") or {}).get("mean")))
    return columns, rows


def latency_table(report: dict) -> list[str]:
    """The main Markdown table, as lines."""
    columns, rows = latency_rows(report)
    return ["| " + " | ".join(title for title, _ in columns) + " |",
            "|" + "".join("--:|" if numeric else "---|" for _, numeric in columns),
            *("| " + " | ".join(row) + " |" for row in rows)]


def int8_kernel_lines(results: list[dict]) -> list[str]:
    """Why an INT8 graph is or is not faster on a runtime: its convolutions and matmuls that ran as integer
    kernels and those left float (runtime info `int8_kernels`; ONNX Runtime's CPU provider reports it)."""
    lines = []
    for r in results:
        for size, k in (r.get("details") or {}).get("int8_kernels", {}).items():
            integer = ", ".join(f"{op} {n}" for op, n in k["integer"].items()) or "none"
            lines.append(f"- {r['runtime']} {bundle_label(r)} {size}: {sum(k['integer'].values())} integer kernels "
                         f"({integer}), {k['float_conv_matmul']} convolutions/matmuls in float")
    if not lines:
        return []
    return ["", "INT8 graphs as the runtime ran them (integer kernels vs float convolutions/matmuls):", "", *lines]


def to_markdown(report: dict) -> str:
    results, bundles, facts = report["results"], report_bundles(report), header_facts(report)
    ok = [r for r in results if "error" not in r]
    failed = [r for r in results if "error" in r]
    lines = [
        f"# {TITLE}",
        "",
        f"**Machine:** {machine_line(report['machine'])}",
        "",
        *([f"**Warning:** {warning}.", ""] if (warning := contention_warning(report["machine"])) else []),
        ("**Bundles:** " if len(bundles) > 1 else "**Bundle:** ")
        + "; ".join(f"`{b['path']}` ({b['precision']})" for b in bundles)
        + f", {facts['model']}. **Input:** {facts['input']} **Method:** {facts['method']}",
        "",
    ]
    lines += latency_table(report)
    lines += ["", "Stage medians (ms) over the timed runs:", "",
              "| runtime | bundle | precision | size | " + " | ".join(label for _, label in STAGES) + " | graph GFLOPs | graph GFLOP/s |",
              "|---|---|---|---|" + "--:|" * (len(STAGES) + 2)]
    for r in ok:
        st = r.get("stages_ms") or {}
        lines.append(f"| {r['runtime']} | {bundle_label(r)} | {r['precision']} | {size_label(r)} | "
                     + " | ".join(_ms(st.get(k)) for k, _ in STAGES)
                     + f" | {_num(r['gflops'], '{:.2f}')} | {_num(r.get('graph_gflops_per_s'))} |")
    lines += int8_kernel_lines(ok)
    if failed:
        lines += ["", "Runtimes that did not run:", ""]
        lines += [f"- **{r['runtime']}** {size_label(r)}: {r['error']}" for r in failed]
    if report.get("skipped_runtimes"):
        lines += ["", "Not measured (unusable here, or no graph of their format in a bundle):", ""]
        lines += [f"- {name}: {why}" for name, why in report["skipped_runtimes"].items()]
    have_ref = any(r.get("speedup_vs_torch") is not None for r in ok)
    lines += [
        "",
        "Notes:",
        "",
        "- GFLOP/s is the graph's GFLOPs (2 × MACs) divided by the steady-state **mean of the whole decode** "
        "(parse + entropy decode, noise, graph and post-processing); \"graph GFLOP/s\" divides by the graph "
        "stage's median alone.",
        f"- ×{REFERENCE} is the torch eager reference's mean latency divided by the runtime's, both measured in "
        "this run at the same size (above 1: faster than the reference)."
        + ("" if have_ref else " The reference did not run, so no ratios are given.")
        + " ×fp32 divides the same runtime's mean on the FP32 bundle by this one's, measured in this run.",
        "- read / compile: as the runtime reports them; a runtime that cannot tell them apart (torch eager) has its "
        "whole construction under compile and no read time. Bundle runtimes read and compile every graph in the "
        "bundle when they are built. Importing the framework is not counted.",
        "- peak RSS is the worker process's maximum resident set size (Python, the framework and the model included).",
        "",
    ]
    return "\n".join(lines)
