"""The benchmark's parameters and its orchestration: which runtimes, which sizes, one worker process
per (runtime, size), results collected into one report. torch is never imported here.

    config = BenchConfig(bundle="bundle/", runtimes="all", runs=10, warmup=2)
    report = run_bench(config)          # {"machine": ..., "config": ..., "results": [...]}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgecodec.errors import BundleError, EdgecodecError
from edgecodec.bundle import open_bundle
from edgecodec.runtimes import bundle_model, bundle_problem

REFERENCE = "torch-cpu"
ERROR_CHARS = 400


@dataclass
class BenchConfig:
    """The parameters of one benchmark run."""

    bundle: str | list[str]  # one bundle directory, a comma list or a list (one model, any precisions)
    runtimes: str | list[str] = "all"  # "all", "a,b,c" or a list
    sizes: list[tuple[int, int]] | None = None  # None: every graph size in the bundle
    runs: int = 10
    warmup: int = 2
    rate: int | None = None  # None: the model's highest rate (every VQ stage present)
    seed: int = 0
    threads: int | None = None  # asked of every runtime; None: each runtime's default
    reference: bool = True  # add the torch eager reference (torch-cpu) when it is not listed
    timeout_s: float = 3600.0  # per worker
    verbose: bool = False  # let the workers' stderr through
    encode: bool = False  # also time each runtime's encoder (the bundle's encode graph, or torch)
    rounds: int = 1  # every runtime measured this many times, in alternating order, its timings pooled

    def to_json(self) -> dict:
        d = asdict(self)
        d["sizes"] = None if self.sizes is None else [list(s) for s in self.sizes]
        return d


# --- the bundle ---------------------------------------------------------------------------------

def bundle_sizes(manifest: dict) -> list[tuple[int, int]]:
    return [(int(g["size"][0]), int(g["size"][1])) for g in manifest["graphs"]]


def graph_entry(manifest: dict, size: tuple[int, int]) -> dict | None:
    for g in manifest["graphs"]:
        if (int(g["size"][0]), int(g["size"][1])) == tuple(size):
            return g
    return None


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise EdgecodecError(f"bad size '{text}': expected HxW, e.g. 512x768") from None
    if h <= 0 or w <= 0:
        raise EdgecodecError(f"bad size '{text}': sides must be positive")
    return h, w


def select_sizes(manifest: dict, wanted: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
    """The bundle's own sizes, or those asked for (any size: the runtimes tile what the bundle lacks)."""
    have = bundle_sizes(manifest)
    if not have:
        raise BundleError("the bundle has no graphs, so no sizes to benchmark")
    return have if wanted is None else [tuple(s) for s in wanted]


# --- the runtimes -------------------------------------------------------------------------------

def probe_runtimes(timeout_s: float = 300.0) -> dict[str, tuple[bool, str]]:
    """{runtime: (usable, reason)} probed in a worker process (the torch probes import torch)."""
    res = subprocess.run([sys.executable, "-m", "edgecodec.benchmarks.worker", "--probe"], capture_output=True,
                         text=True, timeout=timeout_s)
    try:
        out = json.loads(res.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise EdgecodecError(f"could not probe the runtimes: {_tail(res.stderr)}") from None
    if "error" in out:
        raise EdgecodecError(f"could not probe the runtimes: {out['error']}")
    return {k: (bool(v[0]), str(v[1])) for k, v in out.items()}


def resolve_runtimes(requested: str | list[str], manifest: dict, reference: bool = True,
                     probe=probe_runtimes, skipped: dict | None = None) -> list[str]:
    """Runtime names in measuring order. "all": every usable backend that can decode the bundle
    (concrete devices only: `torch` and `openvino-auto` repeat one of them), fastest-ranked first;
    the others go into `skipped` with the reason. The torch reference is added last unless listed
    or `reference` is False."""
    from edgecodec.runtimes import BACKENDS

    skipped = {} if skipped is None else skipped
    if isinstance(requested, str):
        names = [n.strip() for n in requested.split(",") if n.strip()]
    else:
        names = list(requested)
    if not names:
        raise EdgecodecError("no runtime given: use --runtime all or a comma list")
    if "all" in names:
        usable = probe()
        sizes = bundle_sizes(manifest)
        chosen = []
        for b in sorted(BACKENDS.values(), key=lambda b: b.auto_rank):
            ok, why = usable.get(b.name, (False, "not probed"))
            problems = [bundle_problem(b.name, manifest, s) for s in sizes] if b.needs_bundle else []
            if b.in_all:
                skipped[b.name] = b.in_all
            elif b.device == "auto":
                skipped[b.name] = "picks one of the devices measured on their own; name it to measure it"
            elif not ok:
                skipped[b.name] = why
            elif problems and all(problems):
                skipped[b.name] = problems[0]
            if b.name in skipped and not (reference and b.name == REFERENCE):
                continue
            chosen.append(b.name)
        names = [n for n in names if n != "all"] + [n for n in chosen if n not in names]
    unknown = [n for n in names if n not in BACKENDS]
    if unknown:
        raise EdgecodecError(f"unknown runtime '{unknown[0]}': choose from all, {', '.join(BACKENDS)}")
    names = list(dict.fromkeys(names))  # keep order, drop repeats
    if reference and REFERENCE not in names:
        names.append(REFERENCE)
    return names


# --- the loop over workers ----------------------------------------------------------------------

def run_worker(runtime: str, stream_path: str, bundle: str, model: str, runs: int, warmup: int,
               count_flops: bool = False, timeout_s: float = 3600.0, verbose: bool = False,
               threads: int | None = None, encode: bool = False) -> dict:
    """One worker process; its JSON result, or {"runtime", "error"} when it failed."""
    cmd = [sys.executable, "-m", "edgecodec.benchmarks.worker", "--runtime", runtime, "--stream", stream_path,
           "--bundle", str(bundle), "--model", model, "--runs", str(runs), "--warmup", str(warmup)]
    if count_flops:
        cmd.append("--count-flops")
    if threads:
        cmd += ["--threads", str(threads)]
    if encode:
        cmd.append("--encode")
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if verbose else subprocess.PIPE, text=True,
                             timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"runtime": runtime, "error": f"timed out after {timeout_s:.0f} s"}
    lines = (res.stdout or "").strip().splitlines()
    try:
        out = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        why = _tail(res.stderr) or "no output"
        return {"runtime": runtime, "error": f"worker exited with status {res.returncode}: {why}"}
    if "error" in out:
        out["error"] = _one_line(out["error"])
    return out


def bundle_paths(bundle: str | list[str]) -> list[str]:
    """`--bundle A[,B...]` as a list of directories."""
    paths = [p.strip() for p in bundle.split(",")] if isinstance(bundle, str) else [str(p) for p in bundle]
    paths = [p for p in paths if p]
    if not paths:
        raise EdgecodecError("no bundle given: --bundle DIR[,DIR...]")
    return list(dict.fromkeys(paths))


def open_bundles(paths: list[str]) -> list:
    """The bundles, checked to read one stream spec: a bench compares runtimes, precisions and the models
    that share streams (a teacher and its distilled students) on the same stream."""
    bundles = [open_bundle(p, verify=False) for p in paths]  # the runtimes verify checksums when they open them
    first = bundles[0].manifest["model"].get("fingerprint")
    for path, b in zip(paths[1:], bundles[1:]):
        other = b.manifest["model"].get("fingerprint")
        if other != first:
            raise EdgecodecError(f"bundle {path} reads other streams than {paths[0]} (fingerprint {other} vs "
                                 f"{first}): benchmark together only bundles of one model, or of a teacher "
                                 f"and its students")
    return bundles


def common_sizes(manifests: list[dict], wanted: list[tuple[int, int]] | None) -> list[tuple[int, int]]:
    per_bundle = [select_sizes(m, wanted) for m in manifests]
    sizes = [s for s in per_bundle[0] if all(s in other for other in per_bundle[1:])]
    if not sizes:
        raise EdgecodecError("the bundles have no graph size in common: export them at one size, or pick --size")
    return sizes


def run_bench(config: BenchConfig, say=lambda msg: None, probe=probe_runtimes) -> dict:
    """Measure every (size, bundle, runtime) in turn on the same synthetic stream, then the torch
    reference once per size; return the report dict."""
    from edgecodec.runtimes import BACKENDS

    from .inputs import synthetic_stream
    from .machine import machine_info
    from .report import build_report

    if (config.runs < 1 or config.rounds < 1 or config.warmup < 0
            or (config.threads is not None and config.threads < 1)):
        raise EdgecodecError("--runs, --rounds and --threads must be at least 1 and --warmup at least 0")
    paths = bundle_paths(config.bundle)
    bundles = open_bundles(paths)
    manifests = [b.manifest for b in bundles]
    spec = bundles[0].spec
    sizes = common_sizes(manifests, config.sizes)
    probed: dict = {}

    def probe_once():
        if not probed:
            probed.update(probe())
        return probed

    skipped: dict[str, str] = {}
    plan = []  # (bundle path, manifest, runtimes); the reference runs once per size, after the bundles
    wants_reference = config.reference
    for path, manifest in zip(paths, manifests):
        names = resolve_runtimes(config.runtimes, manifest, reference=False, probe=probe_once, skipped=skipped)
        wants_reference = wants_reference or REFERENCE in names
        names = [n for n in names if n != REFERENCE]
        if plan:  # a runtime that needs no bundle (torch-compiled) runs the model once, with the first bundle
            names = [n for n in names if BACKENDS[n].needs_bundle]
        if len(paths) > 1:  # a runtime named for the run that one bundle cannot serve (no graph of its format)
            for n in list(names):
                problems = [bundle_problem(n, manifest, s) for s in sizes]
                if all(problems):
                    names.remove(n)
                    skipped[f"{n} ({Path(path).name})"] = problems[0]
        plan.append((path, manifest, names))
    measured = {n for _, _, names in plan for n in names} | ({REFERENCE} if wants_reference else set())
    skipped = {k: v for k, v in skipped.items() if k not in measured}
    rate = spec.num_rates - 1 if config.rate is None else config.rate
    if not 0 <= rate < spec.num_rates:
        raise EdgecodecError(f"rate {rate} is not offered by model {spec.model} (rates 0..{spec.num_rates - 1})")
    model = bundle_model(paths[0])
    machine = machine_info()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgecodec-bench-") as tmp:
        for size in sizes:
            stream = synthetic_stream(spec, size[0], size[1], rate, config.seed)
            stream_path = os.path.join(tmp, f"bench_{size[0]}x{size[1]}.edc")
            Path(stream_path).write_bytes(stream)
            # each bundle's own graph (a student's differs from its teacher's); the reference is the first's
            gflops_of = {id(m): (graph_entry(m, size) or {}).get("gflops") for m in manifests}
            gflops = gflops_of[id(manifests[0])]
            jobs = [(path, manifest, runtime) for path, manifest, names in plan for runtime in names]
            if wants_reference:
                jobs.append((paths[0], manifests[0], REFERENCE))
            rounds: list[list[dict]] = [[] for _ in jobs]
            for turn in range(config.rounds):  # ABC, CBA, ABC...: slow drift of a shared machine cancels out
                order = range(len(jobs)) if turn % 2 == 0 else reversed(range(len(jobs)))
                for j in order:
                    rounds[j].append(measure_job(config, jobs[j], size, stream_path, model, say, turn))
            for (path, manifest, runtime), outs in zip(jobs, rounds):
                out = pool_rounds(outs)
                out.setdefault("size", list(size))
                out.setdefault("precision", "fp32" if not BACKENDS[runtime].needs_bundle
                               else manifest.get("precision"))
                out["bundle"] = path if BACKENDS[runtime].needs_bundle else None
                out["model"] = manifest["model"]["name"]
                out["bundle_precision"] = manifest.get("precision") if BACKENDS[runtime].needs_bundle else "fp32"
                out["stream_bytes"] = len(stream)
                out["rate"] = rate
                if BACKENDS[runtime].needs_bundle and gflops_of[id(manifest)] is not None:
                    out["gflops"] = float(gflops_of[id(manifest)])
                elif gflops is None and out.get("gflops") is not None:
                    gflops = out["gflops"]  # counted by the torch worker; applies to the runtimes without one
                results.append(out)
            for r in results:
                if list(r["size"]) == list(size) and gflops is not None and r.get("gflops") is None:
                    r["gflops"] = float(gflops)
    return build_report(machine, config.to_json(), manifests, results, skipped=skipped, paths=paths)


def measure_job(config: BenchConfig, job: tuple, size: tuple[int, int], stream_path: str, model: str, say,
                turn: int) -> dict:
    """One worker for one (bundle, runtime) at one size: its result, or {"runtime", "error"}."""
    from edgecodec.runtimes import BACKENDS

    path, manifest, runtime = job
    label = f"{runtime} {manifest.get('precision', 'fp32') if BACKENDS[runtime].needs_bundle else 'fp32'}"
    label += f" {size[0]}x{size[1]}" + (f" (round {turn + 1}/{config.rounds})" if config.rounds > 1 else "")
    say(f"{label}: measuring ({config.warmup} warm-up + {config.runs} runs)")
    t0 = time.perf_counter()
    problem = bundle_problem(runtime, manifest, size)
    if problem:
        out = {"runtime": runtime, "error": problem}
    else:
        torch_worker = BACKENDS[runtime].framework == "torch"
        out = run_worker(runtime, stream_path, path, model, config.runs, config.warmup,
                         count_flops=torch_worker and (graph_entry(manifest, size) or {}).get("gflops") is None,
                         timeout_s=config.timeout_s, verbose=config.verbose, threads=config.threads,
                         encode=config.encode)
    out["wall_s"] = time.perf_counter() - t0
    if "error" in out:
        say(f"{label}: failed: {out['error']}")
    else:
        say(f"{label}: mean {out['latency_ms']['mean']:.1f} ms on {out.get('actual_device')}")
    return out


def pool_rounds(outs: list[dict]) -> dict:
    """One result from a job's rounds: the timed decodes of every round pooled (`round_p50_ms` keeps each
    round's median), setup figures and encode timings from the first round (the coldest), the largest
    peak memory. A round that failed makes the job failed."""
    from .stats import summarize

    failed = [o for o in outs if "error" in o]
    if failed or len(outs) == 1:
        return dict((failed or outs)[0])
    out = dict(outs[0])
    out["samples_ms"] = [s for o in outs for s in o["samples_ms"]]
    out["latency_ms"] = summarize(out["samples_ms"])
    out["round_p50_ms"] = [o["latency_ms"]["p50"] for o in outs]
    out["rounds"] = len(outs)
    out["peak_rss_mb"] = max(o["peak_rss_mb"] for o in outs)
    out["wall_s"] = sum(o["wall_s"] for o in outs)
    return out


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def _tail(stderr: str | None) -> str:
    lines = [line for line in (stderr or "").strip().splitlines() if line.strip()]
    return _one_line(lines[-1]) if lines else ""
