"""The measuring loop: one runtime, one stream, in a process of its own.

    python -m edgecodec.benchmarks.worker --runtime NAME --stream FILE.edc [--bundle DIR] [--model M]
                                          [--runs N] [--warmup K] [--threads T] [--count-flops]
    python -m edgecodec.benchmarks.worker --probe

prints exactly one JSON object on stdout (anything the runtimes print goes to stderr). A fresh
process per (runtime, size) makes read / compile / first-inference times honest (no warm caches,
no graph compiled by an earlier runtime), gives a clean peak RSS, and keeps torch out of the
processes of the torch-free runtimes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process image so far, in MiB.

    Linux: VmHWM from /proc/self/status, which belongs to this process's own address space. The
    getrusage ru_maxrss fallback (KiB on Linux, bytes on macOS) can carry over the parent's peak when
    the parent forked or vforked us, which is why it is not the first choice."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def one_line(exc: BaseException) -> str:
    from edgecodec.errors import EdgecodecError

    text = " ".join(str(exc).split()) or exc.__class__.__name__
    return text if isinstance(exc, EdgecodecError) else f"{exc.__class__.__name__}: {text}"


def measure(runtime: str, stream: bytes, bundle: str | None = None, model: str | None = None,
            runs: int = 10, warmup: int = 2, count_flops: bool = False, threads: int | None = None,
            encode: bool = False) -> dict:
    """Build the decoder, time its first decode alone, then `warmup` untimed and `runs` timed decodes;
    with `encode`, as many encodes (the runtime's encoder, no seed search) of the decoded image."""
    from edgecodec import bitstream
    from edgecodec.runtimes import BACKENDS, create_decoder

    from .stats import stage_medians, summarize

    if runs < 1:
        raise ValueError("runs must be at least 1")
    backend = BACKENDS[runtime]
    header = bitstream.read_header(stream)
    rss_start = peak_rss_mb()

    # The framework's own import (torch alone takes seconds) is not part of reading or compiling.
    t0 = time.perf_counter()
    importlib.import_module(f"edgecodec.runtimes.{backend.module}")
    import_ms = (time.perf_counter() - t0) * 1e3

    options = {"threads": threads} if threads else {}
    t0 = time.perf_counter()
    if backend.needs_bundle:  # compile only the graph being measured (every graph when the size is tiled)
        from edgecodec.bundle import open_bundle
        from edgecodec.frames import padded_size

        opened = open_bundle(bundle, verify=False)
        size = padded_size(header.height, header.width, opened.spec.multiple)
        has = any(tuple(g["size"]) == size for g in opened.manifest["graphs"])
        decoder = create_decoder(runtime, bundle=bundle, sizes=[size] if has else None, **options)
    else:
        decoder = create_decoder(runtime, model=model, **options)
    construct_ms = (time.perf_counter() - t0) * 1e3
    setup = dict(getattr(decoder, "setup_timings", None) or {})
    if "read_ms" in setup and "compile_ms" in setup:
        read_ms, compile_ms = float(setup["read_ms"]), float(setup["compile_ms"])
    else:  # the backend cannot tell reading from compiling: the whole construction counts as compile
        read_ms, compile_ms = None, construct_ms
    rss_setup = peak_rss_mb()

    t0 = time.perf_counter()
    image = decoder.decode(stream)
    first_ms = (time.perf_counter() - t0) * 1e3
    first_stages = dict(decoder.last_timings)
    if getattr(decoder, "jit_compile_ms", None):  # compiled on first use (torch-compiled): that is its compile time
        compile_ms = decoder.jit_compile_ms
    if image.shape != (header.height, header.width, 3):
        raise RuntimeError(f"decoder returned shape {image.shape} for a {header.height}x{header.width} stream")

    for _ in range(warmup):
        decoder.decode(stream)
    latencies, stages = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        decoder.decode(stream)
        latencies.append((time.perf_counter() - t0) * 1e3)
        stages.append(dict(decoder.last_timings))

    encode_ms = None
    if encode:
        from edgecodec.coding import encode_with

        for i in range(warmup + 1 + runs):  # the first compiles the encoder
            t0 = time.perf_counter()
            encode_with(decoder, image, header.rate)
            if i > warmup:
                encode_ms = (encode_ms or []) + [(time.perf_counter() - t0) * 1e3]
    info = decoder.info.to_json()
    result = {
        "runtime": runtime,
        "precision": info.get("precision"),
        "size": [header.height, header.width],
        "tiles": decoder.tiles(header.height, header.width),
        "rate": header.rate,
        "latency_ms": summarize(latencies),
        "samples_ms": latencies,
        "first_inference_ms": first_ms,
        "first_inference_stages_ms": first_stages,
        "read_ms": read_ms,
        "compile_ms": compile_ms,
        "construct_ms": construct_ms,
        "import_ms": import_ms,
        "setup_ms": setup or None,
        "stages_ms": stage_medians(stages),
        "peak_rss_mb": peak_rss_mb(),
        "rss_before_decoder_mb": rss_start,
        "rss_after_setup_mb": rss_setup,
        "actual_device": info.get("device"),
        "backend": info.get("backend"),
        "providers": info.get("providers", []),
        "details": info.get("details", {}),
        "runs": runs,
        "warmup": warmup,
        "pid": os.getpid(),
    }
    if encode_ms is not None:
        result["encode_ms"] = summarize(encode_ms)
    if count_flops and hasattr(decoder, "loaded"):  # torch backends hold the model: count on the meta device
        from edgecodec.flops import decode_flops

        result["gflops"] = decode_flops(decoder.loaded.codec.cfg, header.height, header.width) / 1e9
    return result


def probe_all() -> dict:
    """{runtime: [usable, reason]} for every backend (imports each framework that is installed)."""
    from edgecodec.runtimes import BACKENDS, probe

    out = {}
    for name in BACKENDS:
        try:
            out[name] = list(probe(name))
        except Exception as exc:  # noqa: BLE001 - a broken runtime is just not usable
            out[name] = [False, one_line(exc)]
    return out


@contextlib.contextmanager
def stdout_to_stderr():
    """Send everything written to fd 1 (Python or native code) to stderr; yield the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(saved), "w") as real:
            yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edgecodec.benchmarks.worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runtime")
    p.add_argument("--stream", help=".edc file to decode")
    p.add_argument("--bundle", default=None)
    p.add_argument("--model", default=None)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="threads for the runtime (default: its own choice)")
    p.add_argument("--count-flops", action="store_true", help="torch runtimes: also count the graph's GFLOPs")
    p.add_argument("--encode", action="store_true", help="also time the runtime's encoder")
    p.add_argument("--probe", action="store_true", help="report which runtimes are usable here, then exit")
    args = p.parse_args(argv)
    if not args.probe and not (args.runtime and args.stream):
        p.error("--runtime and --stream are required (or --probe)")
    code = 0
    with stdout_to_stderr() as real_stdout:
        try:
            if args.probe:
                out = probe_all()
            else:
                out = measure(args.runtime, Path(args.stream).read_bytes(), bundle=args.bundle, model=args.model,
                              runs=args.runs, warmup=args.warmup, count_flops=args.count_flops,
                              threads=args.threads, encode=args.encode)
        except Exception as exc:  # noqa: BLE001 - reported to the runner as one line, not a traceback
            import traceback

            traceback.print_exc(file=sys.stderr)
            out, code = {"runtime": args.runtime, "error": one_line(exc)}, 1
        real_stdout.write(json.dumps(out, default=str) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
