"""`edgecodec bench`: decode latency of every runtime (and the torch reference) on one bundle.

Wire it into the main parser with `add_bench_parser(sub)`; the handler returns the exit code and
prints user mistakes as one line on stderr.
"""

from __future__ import annotations

import argparse

from edgecodec.console import say




def cmd_bench(args: argparse.Namespace) -> int:
    from .output import write_reports
    from .report import latency_table
    from .runner import BenchConfig, parse_size, run_bench

    # user errors propagate to edgecodec.apps.cli.main, which prints them as one line
    config = BenchConfig(
        bundle=args.bundle, runtimes=args.runtime, sizes=None if args.size is None else [parse_size(args.size)],
        runs=args.runs, warmup=args.warmup, rate=args.rate, seed=args.seed, threads=args.threads,
        reference=not args.no_reference, timeout_s=args.timeout, verbose=args.verbose, encode=args.encode,
        rounds=args.rounds)
    report = run_bench(config, say=lambda msg: say(f"bench: {msg}"))
    write_reports(report, args.json, args.md, args.html)
    print("\n".join(latency_table(report)))
    written = [args.json, *(path for path in (args.md, args.html) if path)]
    print("\nresults written to " + (", ".join(written[:-1]) + " and " if len(written) > 1 else "") + written[-1])
    ok = [r for r in report["results"] if "error" not in r]
    return 0 if ok else 1


def add_bench_parser(sub) -> argparse.ArgumentParser:
    """Register `bench` on an argparse subparsers object; returns the new parser."""
    p = sub.add_parser("bench", help="decode latency of runtimes on an exported bundle, against torch eager",
                       description="Decode latency of each runtime on a bundle, measured in turn in fresh "
                                   "processes on the same synthetic stream, with the torch eager reference "
                                   "(torch-cpu) in the same run.")
    p.add_argument("--bundle", required=True,
                   help="exported bundle directory (with manifest.json), or a comma list of bundles of one "
                        "model (e.g. FP32 and INT8) measured side by side in this run")
    p.add_argument("--runtime", default="all",
                   help="comma list of runtimes, or 'all': every usable one that can decode the bundle "
                        "(see `edgecodec devices`; default all)")
    p.add_argument("--size", default=None, help="HxW image size (default: every graph size of the bundle); a size "
                                                "the bundle has no graph for is decoded in tiles of its graphs")
    p.add_argument("--runs", type=int, default=10, help="timed decodes per runtime and size (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed decodes after the first (default 2)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every runtime N times in alternating order (ABC, CBA, ...) and pool the timings, "
                        "so a machine whose speed drifts does not favour whichever ran first (default 1)")
    p.add_argument("--rate", type=int, default=None, help="rate index of the stream (default: the highest)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream (default 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads asked of every runtime (default: each runtime's own choice)")
    p.add_argument("--no-reference", action="store_true", help="do not add the torch-cpu reference")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per runtime and size")
    p.add_argument("--json", required=True, help="where to write the JSON results")
    p.add_argument("--md", default=None, help="where to write a Markdown report")
    p.add_argument("--html", default=None, metavar="OUT.html", help="where to write an HTML report with plots")
    p.add_argument("--encode", action="store_true",
                   help="also time each runtime's encoder on the decoded image (the bundle's encode graph; torch "
                        "for the reference), reported as encode_ms")
    p.add_argument("--verbose", action="store_true", help="show the runtimes' own output")
    p.set_defaults(func=cmd_bench)
    return p
