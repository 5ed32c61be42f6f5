"""Do other runtimes run a family-coded model's priors (OneDC's) to the same scale indices as torch?

Every y symbol's distribution is chosen by a prior network; a decoder whose prior picks another scale index
than the encoder's for one symbol desyncs the entropy decoder for the rest of the stream. This exports each
pass's prior (the model's `prior_units`) to ONNX, runs it in ONNX Runtime and OpenVINO (CPU) on exactly the
inputs the torch encoder's prior saw for real photos, and counts the coded symbols whose index differs.

    python -m edgecodec.benchmarks.prior_agreement --model M --images DIR [--count 8]
        [--sizes 128x192,512x768] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

# OpenVINO as a host-side prior would be configured: f32 asked for explicitly, and the plugin's default
RUNTIMES = {"onnxruntime-cpu": {}, "openvino-cpu f32": {"INFERENCE_PRECISION_HINT": "f32"}, "openvino-cpu default": {}}


def _sessions(path: Path):
    import onnxruntime as ort
    import openvino as ov

    out = {}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}  # pass 0's prior does not read y_hat: the export drops it
    out["onnxruntime-cpu"] = lambda feeds: session.run(None, {k: v for k, v in feeds.items() if k in wanted})[0]
    core = ov.Core()
    for name, config in RUNTIMES.items():
        if name.startswith("openvino"):
            compiled = core.compile_model(str(path), "CPU", config)
            out[name] = lambda feeds, c=compiled: c({k: v for k, v in feeds.items() if k in wanted})[0]
    return out


def run(model: str, images: str, count: int, sizes: list[tuple[int, int]], say=lambda m: None) -> dict:
    import numpy as np
    import torch

    from edgecodec.errors import EdgecodecError
    from edgecodec.export.onnx_export import trace_module
    from edgecodec.imageio import list_images, load_image
    from edgecodec.quantize.calibration import fit_image
    from edgecodec.weights import load_model

    loaded = load_model(model)
    codec = loaded.codec
    if codec.coder == "vq":
        raise EdgecodecError(f"model {loaded.name} has no prior networks: its entropy model is a static table")
    paths = list_images(images)[:count]
    if not paths:
        raise EdgecodecError(f"--images {images}: no images")
    units = codec.prior_units()
    results = []
    for h, w in sizes:
        photos = [fit_image(load_image(p), h, w) for p in paths]
        seen = [codec.prior_inputs(rgb) for rgb in photos]
        with tempfile.TemporaryDirectory(prefix="edgecodec-priors-") as tmp:
            for k, unit in enumerate(units):
                example = (torch.from_numpy(seen[0]["z_hat"]), torch.from_numpy(seen[0]["y_hat_before"][k]))
                path = Path(tmp) / f"prior{k}.onnx"
                trace_module(unit, example, ["z_hat", "y_hat"], ["scales", "means"], path)
                runners = _sessions(path)
                stats = {name: {"symbols": 0, "flips": 0, "max_rel_scale_diff": 0.0} for name in runners}
                for inputs in seen:
                    z, y = inputs["z_hat"], inputs["y_hat_before"][k]
                    mask = inputs["masks"][k]
                    with torch.no_grad():
                        ref = unit(torch.from_numpy(z), torch.from_numpy(y))[0].numpy()
                    want = codec.prior_indices(ref)[mask]
                    for name, infer in runners.items():
                        got = np.asarray(infer({"z_hat": z, "y_hat": y}), np.float32)
                        s = stats[name]
                        s["symbols"] += int(mask.sum())
                        s["flips"] += int((codec.prior_indices(got)[mask] != want).sum())
                        rel = np.abs(got - ref)[mask] / np.maximum(np.abs(ref[mask]), 1e-6)
                        s["max_rel_scale_diff"] = max(s["max_rel_scale_diff"], float(rel.max()))
                for name, s in stats.items():
                    results.append({"size": [h, w], "pass": k, "runtime": name, **s})
                say(f"{h}x{w} pass {k}: " + ", ".join(f"{n} {s['flips']}/{s['symbols']}" for n, s in stats.items()))
    totals: dict = {}
    for r in results:
        t = totals.setdefault(r["runtime"], {"symbols": 0, "flips": 0})
        t["symbols"] += r["symbols"]
        t["flips"] += r["flips"]
    return {"model": loaded.name, "source": loaded.source, "images": [p.name for p in paths],
            "sizes": [list(s) for s in sizes], "totals": totals, "per_pass": results}


def main(argv: list[str] | None = None) -> int:
    from edgecodec.benchmarks.runner import parse_size
    from edgecodec.errors import EdgecodecError
    from edgecodec.imageio import write_text_atomic

    p = argparse.ArgumentParser(prog="python -m edgecodec.benchmarks.prior_agreement",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True, help="folder of photos, fitted to each size")
    p.add_argument("--count", type=int, default=8, help="photos per size (default 8)")
    p.add_argument("--sizes", default="128x192,512x768")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    try:
        result = run(args.model, args.images, args.count, [parse_size(s) for s in args.sizes.split(",")],
                     say=lambda m: print(m, file=sys.stderr))
    except EdgecodecError as exc:
        print(f"edgecodec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    for name, t in result["totals"].items():
        print(f"{name}: {t['flips']} of {t['symbols']} coded symbols get another scale index than torch's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
