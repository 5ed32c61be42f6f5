"""The stream fuzzing harness: mutated .edc streams through `parse` and, for those that parse, a full
decode on every CPU runtime. Every case must end in an image or a one-line StreamError within the
time bound, and an image must be the same pixels when decoded again.

    python -m edgecodec.benchmarks.fuzz --cases 100000 --seed 0 --json fuzz.json

Mutations (seeded; each case draws one, from real streams of every rate of the sample photos):

    payload_bitflip  1-8 payload bits flipped, CRC recomputed: the entropy decoder, not the CRC, is tested
    truncate         the payload cut short, its length field and CRC made consistent
    header_field     rate, height, width, version, fingerprint, seed or payload length set to an edge or
                     random value, CRC recomputed
    random_payload   valid magic and header, random payload bytes of random length, CRC recomputed
    random_bytes     valid magic followed by random bytes (the CRC almost never matches)
    raw_bitflip      bits flipped anywhere, CRC not fixed
    splice           one stream's header on another's payload, CRC recomputed
    valid_random     a well-formed stream of random indices, size (tiled where the bundle lacks it) and seed

A structural mutator written by hand rather than coverage-guided (atheris) or property-based
(hypothesis): the mutations keep the framing consistent so the deep checks are reached, the
decoders are compiled graphs a coverage tracer cannot see into, and a seeded numpy generator
replays any case from its number alone (`--start N --cases 1`).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import signal
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

KINDS = ("payload_bitflip", "truncate", "header_field", "random_payload", "random_bytes", "raw_bitflip", "splice",
         "valid_random")
TIME_BOUND_S = 20.0  # per case, all runtimes together: beyond it the case is a hang
SIZE = (64, 64)  # the bundle's graph; streams of other sizes decode in tiles of it


def _with_crc(data: bytearray) -> bytes:
    from edgecodec.bitstream import HEADER_BYTES

    crc = zlib.crc32(bytes(data[: HEADER_BYTES - 4]) + bytes(data[HEADER_BYTES:]))
    data[HEADER_BYTES - 4: HEADER_BYTES] = struct.pack("<I", crc)
    return bytes(data)


def mutate(kind: str, rng: np.random.Generator, streams: list[bytes], spec) -> bytes:
    from edgecodec.bitstream import HEADER_BYTES, MAGIC, write
    from edgecodec.benchmarks.inputs import synthetic_indices

    base = bytearray(streams[int(rng.integers(len(streams)))])
    payload = len(base) - HEADER_BYTES
    if kind == "payload_bitflip":
        for _ in range(int(rng.integers(1, 9))):
            bit = int(rng.integers(payload * 8))
            base[HEADER_BYTES + bit // 8] ^= 1 << (bit % 8)
        return _with_crc(base)
    if kind == "truncate":
        keep = int(rng.integers(0, payload))
        del base[HEADER_BYTES + keep:]
        base[22:26] = struct.pack("<I", keep)
        return _with_crc(base)
    if kind == "header_field":
        field = rng.choice(["rate", "height", "width", "version", "fingerprint", "seed", "payload"])
        edge = lambda bits: int(rng.choice([0, 1, 2, 63, 64, 65, 16383, 16384, 16385, 2 ** bits - 1,  # noqa: E731
                                            int(rng.integers(2 ** bits))]))
        offset, fmt, bits = {"rate": (5, "<B", 8), "version": (4, "<B", 8), "height": (6, "<H", 16),
                             "width": (8, "<H", 16), "seed": (18, "<I", 32), "payload": (22, "<I", 32),
                             "fingerprint": (10, None, 64)}[field]
        if fmt is None:
            base[10:18] = rng.bytes(8)
        else:
            base[offset: offset + struct.calcsize(fmt)] = struct.pack(fmt, edge(bits) % 2 ** bits)
        return _with_crc(base)
    if kind == "random_payload":
        n = int(rng.integers(0, 2 * payload + 16))
        head = base[:HEADER_BYTES]
        head[22:26] = struct.pack("<I", n)
        return _with_crc(head + bytearray(rng.bytes(n)))
    if kind == "random_bytes":
        return MAGIC + rng.bytes(int(rng.integers(0, 200)))
    if kind == "raw_bitflip":
        for _ in range(int(rng.integers(1, 5))):
            bit = int(rng.integers(len(base) * 8))
            base[bit // 8] ^= 1 << (bit % 8)
        return bytes(base)
    if kind == "splice":
        other = streams[int(rng.integers(len(streams)))]
        head = base[:HEADER_BYTES]
        head[22:26] = struct.pack("<I", len(other) - HEADER_BYTES)
        return _with_crc(head + bytearray(other[HEADER_BYTES:]))
    if kind == "valid_random":
        h, w = (int(v) for v in rng.integers(1, 97, size=2))  # up to 2 x 2 tiles
        rate = int(rng.integers(spec.num_rates))
        indices = synthetic_indices(spec, h, w, rate, seed=int(rng.integers(2 ** 31)))
        return write(spec, indices, h, w, int(rng.integers(2 ** 32)))
    raise ValueError(kind)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def run_case(data: bytes, spec, decoders: dict) -> dict:
    """One case: parse, then decode on every runtime (the first one twice). Outcome: 'decoded',
    'refused' (a StreamError, with its first words) or 'crash' / 'hang' / 'nondeterministic'."""
    from edgecodec import bitstream
    from edgecodec.errors import StreamError

    t0 = time.perf_counter()
    signal.alarm(int(TIME_BOUND_S))
    try:
        try:
            bitstream.parse(data, spec)
        except StreamError as exc:
            message = str(exc)
            if "\n" in message or not message:
                return {"outcome": "crash", "error": f"StreamError not one line: {message!r}"}
            return {"outcome": "refused", "reason": re.sub(r"\d+", "N", " ".join(message.split()[:4])).rstrip(":,(")}
        images = {}
        for name, dec in decoders.items():
            images[name] = dec.decode(data)
        first = next(iter(decoders))
        if not np.array_equal(decoders[first].decode(data), images[first]):
            return {"outcome": "nondeterministic", "runtime": first}
        shapes = {img.shape for img in images.values()}
        if len(shapes) != 1:
            return {"outcome": "crash", "error": f"runtimes disagree on the shape: {shapes}"}
        return {"outcome": "decoded", "pixels": int(images[first].shape[0] * images[first].shape[1])}
    except Hang:
        return {"outcome": "hang"}
    except Exception as exc:  # noqa: BLE001 - anything but a StreamError is what the fuzzer looks for
        return {"outcome": "crash", "error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    finally:
        signal.alarm(0)
        elapsed = time.perf_counter() - t0
        run_case.last_s = elapsed


def setup(workdir: Path, runtimes: list[str], model: str = "tiny"):
    """The model's real streams (every rate, the sample photos cropped to SIZE) and one decoder per
    runtime (bundle runtimes on a bundle exported at SIZE)."""
    from edgecodec.coding import encode_rates
    from edgecodec.export.exporter import export_bundle
    from edgecodec.imageio import sample_images
    from edgecodec.runtimes import BACKENDS, create_decoder
    from edgecodec.weights import load_model

    loaded = load_model(model, quiet=True)
    formats = sorted({BACKENDS[r].format for r in runtimes if BACKENDS[r].needs_bundle})
    bundle = None
    if formats:
        bundle = str(workdir / "bundle")
        export_bundle(loaded, bundle, formats, "fp32", [SIZE], parity_images=1)
    decoders = {r: create_decoder(r, model=loaded, bundle=bundle if BACKENDS[r].needs_bundle else None)
                for r in runtimes}
    torch_dec = create_decoder("torch-cpu", model=loaded)
    streams = []
    for name, rgb in sorted(sample_images().items()):
        for crop in ((0, 0, *SIZE), (100, 150, 48, 80)):  # one of the graph's size, one tiled and padded
            y, x, h, w = crop
            img = np.ascontiguousarray(rgb[y: y + h, x: x + w])
            streams += [e.data for e in encode_rates(torch_dec, img, range(torch_dec.spec.num_rates)).values()]
    return torch_dec.spec, streams, decoders


def fuzz(cases: int, seed: int, runtimes: list[str], say=lambda m: None, start: int = 0) -> dict:
    signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory(prefix="edgecodec-fuzz-") as tmp:
        spec, streams, decoders = setup(Path(tmp), runtimes)
        outcomes: Counter = Counter()
        by_kind: dict[str, Counter] = {k: Counter() for k in KINDS}
        reasons: Counter = Counter()
        failures, worst = [], {"seconds": 0.0}
        t_start = time.perf_counter()
        for i in range(start, start + cases):
            rng = np.random.Generator(np.random.PCG64([seed, i]))  # case i replays from (seed, i) alone
            kind = KINDS[int(rng.integers(len(KINDS)))]
            data = mutate(kind, rng, streams, spec)
            result = run_case(data, spec, decoders)
            outcomes[result["outcome"]] += 1
            by_kind[kind][result["outcome"]] += 1
            if result["outcome"] == "refused":
                reasons[result["reason"]] += 1
            elif result["outcome"] != "decoded":
                failures.append({"case": i, "kind": kind, **result, "stream_hex": data[:64].hex()})
            if run_case.last_s > worst["seconds"]:
                worst = {"seconds": run_case.last_s, "case": i, "kind": kind, "outcome": result["outcome"],
                         "bytes": len(data)}
            if (i - start + 1) % 5000 == 0:
                say(f"fuzz: {i - start + 1}/{cases} cases, {dict(outcomes)}")
        return {
            "schema": "edgecodec-fuzz/1",
            "cases": cases, "seed": seed, "first_case": start, "runtimes": runtimes,
            "seed_streams": len(streams), "bundle_size": list(SIZE), "time_bound_s": TIME_BOUND_S,
            "outcomes": dict(outcomes),
            "by_kind": {k: dict(v) for k, v in by_kind.items()},
            "refusal_reasons": dict(reasons.most_common()),
            "crashes": outcomes["crash"], "hangs": outcomes["hang"], "nondeterministic": outcomes["nondeterministic"],
            "failures": failures[:50],
            "worst_case": worst,
            "wall_s": round(time.perf_counter() - t_start, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def main(argv: list[str] | None = None) -> int:
    from edgecodec.imageio import write_text_atomic

    p = argparse.ArgumentParser(prog="python -m edgecodec.benchmarks.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first case number (replay a range, e.g. one failure)")
    p.add_argument("--runtimes", default="torch-cpu,onnxruntime-cpu,openvino-cpu")
    p.add_argument("--json", required=True, help="where to write the summary")
    args = p.parse_args(argv)
    summary = fuzz(args.cases, args.seed, [r for r in args.runtimes.split(",") if r],
                   say=lambda m: print(m, file=sys.stderr, flush=True), start=args.start)
    write_text_atomic(args.json, json.dumps(summary, indent=2))
    print(f"{summary['cases']} cases: {summary['outcomes']}; worst {summary['worst_case']['seconds']:.2f} s; "
          f"peak RSS {summary['peak_rss_mb']} MB")
    return 0 if not (summary["crashes"] or summary["hangs"] or summary["nondeterministic"]) else 1


if __name__ == "__main__":
    sys.exit(main())
