"""The GPU device check: on a machine with a GPU, decode the sample photos with every GPU runtime and
precision usable here, check each against the torch CPU decoder (>= 40 dB PSNR for FP32, >= 35 dB
for FP16 and INT8), and write a bench report of the same runtimes. Elsewhere it writes why each GPU
runtime is not usable and exits 0: skipped, not failed.

    python -m edgecodec.benchmarks.device_check --out DIR [--model tiny] [--size 512x768]
    pytest -m gpu   (tests/test_device_check.py runs this)

Exit codes: 0 passed or skipped (the summary's "status" says which), 1 a runtime failed its check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MIN_PSNR = {"fp32": 40.0, "fp16": 35.0, "int8": 35.0}
GPU_DEVICES = ("cuda", "tensorrt", "gpu")


def gpu_runtimes() -> dict[str, tuple[bool, str]]:
    """{runtime: (usable, reason)} for every GPU row of the backend table, plus torch-compiled on CUDA."""
    from edgecodec.runtimes import BACKENDS, probe

    out = {name: probe(name) for name, b in BACKENDS.items() if b.device in GPU_DEVICES}
    # torch-compiled follows torch's device: on CUDA only where torch sees one
    cuda, compiled = probe("torch-cuda"), probe("torch-compiled")
    out["torch-compiled"] = (cuda[0] and compiled[0], cuda[1] or compiled[1])
    return out


def check(runtime: str, precision: str, decode, cases: list, reference: dict) -> dict:
    from edgecodec.metrics import psnr

    worst = min(psnr(reference[c.name, c.rate], decode(c.data)) for c in cases)
    return {"runtime": runtime, "precision": precision, "min_psnr_vs_torch": round(worst, 2),
            "threshold": MIN_PSNR[precision], "passed": bool(worst >= MIN_PSNR[precision])}


def run(out: Path, model: str, size: tuple[int, int], say=print) -> dict:
    from edgecodec.benchmarks.output import write_reports
    from edgecodec.benchmarks.runner import BenchConfig, run_bench
    from edgecodec.export.exporter import export_bundle
    from edgecodec.harness import encode_cases
    from edgecodec.imageio import sample_images
    from edgecodec.quantize.bundle import QuantizeOptions, quantize_bundle
    from edgecodec.quantize.calibration import fit_image, sets_from_images
    from edgecodec.runtimes import BACKENDS, create_decoder
    from edgecodec.weights import load_model

    runtimes = gpu_runtimes()
    usable = [name for name, (ok, _) in runtimes.items() if ok]
    summary = {"status": "skipped", "size": list(size), "model": model,
               "runtimes": {name: {"usable": ok, "reason": why} for name, (ok, why) in runtimes.items()},
               "checks": []}
    out.mkdir(parents=True, exist_ok=True)
    if not usable:
        reasons = "; ".join(f"{n}: {why}" for n, (_, why) in runtimes.items())
        summary["reason"] = f"no GPU runtime is usable here ({reasons})"
        return summary

    loaded = load_model(model)
    images = [(name, fit_image(rgb, *size)) for name, rgb in sample_images().items()]
    say(f"device check: {', '.join(usable)} at {size[0]}x{size[1]} on {len(images)} sample photos")
    bundles = {p: export_bundle(loaded, str(out / f"bundle-{p}"), ["onnx", "openvino"], p, [size], parity_images=1)
               for p in ("fp32", "fp16")}
    sets = {size: sets_from_images(loaded.codec, images, 8, size, validation=4, source="the sample photos")}
    bundles["int8"] = quantize_bundle(loaded, str(out / "bundle-int8"), [size],
                                      QuantizeOptions(method="ptq", samples=8, allow_parity_failure=True), sets=sets)
    reference = create_decoder("torch-cpu", model=loaded)
    cases = encode_cases(reference, images, list(range(reference.spec.num_rates)))
    expected = {(c.name, c.rate): reference.decode(c.data) for c in cases}
    for name in usable:
        b = BACKENDS[name]
        if not b.needs_bundle:  # torch on CUDA: eager fp32, compiled in fp32 and fp16
            variants = [("fp32", {})] if name == "torch-cuda" else [("fp32", {}), ("fp16", {"dtype": "fp16"})]
            for precision, options in variants:
                dec = create_decoder(name, model=loaded, **options)
                summary["checks"].append({**check(name, precision, dec.decode, cases, expected),
                                          "info": dec.info.to_json()})
            continue
        for precision, bundle in bundles.items():
            if precision not in b.precisions:
                continue
            try:
                dec = create_decoder(name, bundle=str(bundle.root))
                summary["checks"].append({**check(name, precision, dec.decode, cases, expected),
                                          "info": dec.info.to_json()})
            except Exception as exc:  # noqa: BLE001 - a runtime that cannot run a precision is a finding
                summary["checks"].append({"runtime": name, "precision": precision, "passed": False,
                                          "error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"})
        say(f"device check: {name} done")
    bench_runtimes = [n for n in usable if BACKENDS[n].needs_bundle] + (["torch-cuda"] if "torch-cuda" in usable else [])
    if bench_runtimes:
        report = run_bench(BenchConfig(bundle=[str(b.root) for b in bundles.values()], runtimes=",".join(bench_runtimes),
                                       runs=20, warmup=3), say=lambda m: say(f"bench: {m}"))
        write_reports(report, str(out / "bench.json"), str(out / "bench.md"), str(out / "bench.html"))
    summary["status"] = "passed" if all(c["passed"] for c in summary["checks"]) else "failed"
    return summary


def main(argv: list[str] | None = None) -> int:
    from edgecodec.benchmarks.runner import parse_size
    from edgecodec.imageio import write_text_atomic

    p = argparse.ArgumentParser(prog="python -m edgecodec.benchmarks.device_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for bundles, device_check.json and the bench report")
    p.add_argument("--model", default="tiny")
    p.add_argument("--size", default="512x768", help="HxW of the bundles and the photos (default 512x768)")
    args = p.parse_args(argv)
    out = Path(args.out)
    summary = run(out, args.model, parse_size(args.size))
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(str(out / "device_check.json"), json.dumps(summary, indent=2))
    if summary["status"] == "skipped":
        print(f"device check skipped: {summary['reason']}")
        return 0
    for c in summary["checks"]:
        state = "PASS" if c["passed"] else "FAIL"
        print(f"{state} {c['runtime']:22s} {c['precision']:5s} "
              + (f"min {c['min_psnr_vs_torch']:.1f} dB (>= {c['threshold']:.0f})" if "error" not in c else c["error"]))
    return 0 if summary["status"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
