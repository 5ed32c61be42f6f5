"""Host-side stream decode of a model whose family codes its own payload (spec coder "family", e.g. OneDC):
container parsing, the hyper decoder, the prior passes and the entropy decoder, everything before the
decode graph, timed apart on one stream of a real photo (fitted to --size).

    python -m edgecodec.benchmarks.host_side --model onedc --size 512x768 [--runs 5] [--json OUT.json]

The graph is not run (bench measures graphs); the stream comes from the model's own encoder. With seeded
random weights the symbols' statistics are not a trained model's, so the entropy decoder's share is
indicative; the prior networks' cost does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def run(model: str, size: tuple[int, int], runs: int) -> dict:
    import numpy as np

    from edgecodec.benchmarks.machine import machine_info
    from edgecodec.benchmarks.stats import summarize
    from edgecodec.errors import EdgecodecError
    from edgecodec.imageio import sample_images
    from edgecodec.quantize.calibration import fit_image
    from edgecodec.weights import load_model

    loaded = load_model(model)
    codec = loaded.codec
    if codec.stream_spec().coder == "vq":
        raise EdgecodecError(f"model {loaded.name} uses the core's VQ coder: its host side is parse + "
                             "entropy decode, which `edgecodec bench` reports as parse_ms")
    rgb = fit_image(sample_images()["china"], *size)
    t = time.perf_counter()
    payload = codec.write_payload(rgb)[0]
    encode_s = time.perf_counter() - t
    codec.read_payload(payload)  # warm-up: first-call costs (a JIT's compile) are not steady state
    stages: dict[str, list[float]] = {}
    for _ in range(runs):
        t = time.perf_counter()
        host = codec.read_payload(payload)
        total = (time.perf_counter() - t) * 1e3
        for k, v in {**host["timings"], "host_ms": total}.items():
            stages.setdefault(k, []).append(v)
    symbols = int(host["y_hat"].size)
    coded = sum(int((r.scale_index >= 0).sum()) for r in host["record"])
    return {"model": loaded.name, "source": loaded.source, "size": list(size), "runs": runs,
            "bytes": len(payload), "y_symbols": symbols, "coded_symbols": coded, "encode_s": round(encode_s, 2),
            "median_ms": {k: round(float(np.median(v)), 2) for k, v in stages.items()},
            "host_ms": summarize(stages["host_ms"]), "machine": machine_info()}


def main(argv: list[str] | None = None) -> int:
    from edgecodec.benchmarks.runner import parse_size
    from edgecodec.errors import EdgecodecError
    from edgecodec.imageio import write_text_atomic

    p = argparse.ArgumentParser(prog="python -m edgecodec.benchmarks.host_side", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--size", default="512x768", help="HxW the photo is fitted to (default 512x768)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    try:
        result = run(args.model, parse_size(args.size), args.runs)
    except EdgecodecError as exc:
        print(f"edgecodec: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2))
    m = result["median_ms"]
    print(f"{result['model']} at {args.size}: {result['y_symbols']} y symbols, {result['bytes']} bytes; host side "
          f"{m['host_ms']:.1f} ms median of {args.runs} (parse {m['parse_ms']:.1f}, hyper {m['hyper_ms']:.1f}, "
          f"priors {m['prior_ms']:.1f}, entropy {m['entropy_ms']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
