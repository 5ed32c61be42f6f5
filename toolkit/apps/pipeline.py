"""`edgecodec pipeline`: the main job, from a checkpoint to measured edge decoders.

    export the teacher FP32 -> [distil a student] -> export the deployed model (the student) FP32 ->
    quantize it INT8 (each method) -> verify (quality against the originals and the teacher, runtime
    agreement, on real photos, every rate) -> bench every bundle, runtime and precision in one run
    -> report.json / report.md

Every step's result lands in RUN_DIR (bundles fp32/ and int8-METHOD/, bench.json/.md/.html,
the reports); a step that fails is recorded and the later steps that do not need it still run, so a
report always says what worked. A recipe (TOML) changes the model, sizes, images and so on:

    model = "tiny"              # the teacher
    student = "tiny-edge"       # the deployed decoder: a student model (name or path), or "" for the teacher
    distill_data = ""           # a folder: distil a new student of preset `student` from `model` first
    sizes = ["448x640"]
    images = "samples"          # the photos installed packages ship, or a folder of images
    methods = ["ptq", "accuracy", "qat"]
    runtimes = "all"
"""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecodec.console import say
from edgecodec.errors import EdgecodecError

SCHEMA = "edgecodec-pipeline/1"


@dataclass
class Recipe:
    model: str = "tiny"  # the teacher
    student: str = "tiny-edge"  # deployed: a student (name, path; a preset when distill_data is set), "" = teacher
    distill_data: str = ""  # a folder of training images: distil a new student first
    distill_steps: int = 2000
    student_gap_db: float = 1.5  # verify: largest PSNR gap of the deployed FP32 student below the teacher
    #                              (the 0.5 tiny-edge: 1.17 on the sample photos, see its model card)
    sizes: list[str] = field(default_factory=lambda: ["448x640"])  # the sample photos are 427x640
    images: str = "samples"  # "samples" or a folder; images of another padded size are fitted to sizes[0]
    max_images: int = 8  # images used to verify quality
    rates: str = "all"
    formats: list[str] = field(default_factory=lambda: ["onnx", "openvino"])
    methods: list[str] = field(default_factory=lambda: ["ptq", "accuracy", "qat"])
    calibration_samples: int = 16
    quality_drop_db: float = 0.3  # verify: largest PSNR loss of an INT8 decoder against FP32
    runtimes: str = "all"
    bench_runs: int = 10
    bench_warmup: int = 2
    bench_threads: int | None = None
    # every quantization method's options, keyed as in quantize.methods (max_drop, qat_steps, ...):
    # given as top-level recipe keys, filled with the methods' pipeline defaults
    method_options: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None) -> "Recipe":
        if path is None:
            return cls()
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EdgecodecError(f"recipe {path}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise EdgecodecError(f"recipe {path}: not valid TOML ({exc})") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict, where: str = "recipe") -> "Recipe":
        from edgecodec.quantize.methods import all_options, method_options

        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "method_options"}
        options = all_options()
        unknown = sorted(set(data) - set(fields) - set(options))
        if unknown:
            raise EdgecodecError(f"{where}: unknown key '{unknown[0]}' (known: {', '.join([*fields, *options])})")
        default = cls()
        try:
            method_values = method_options({k: v for k, v in data.items() if k in options}, pipeline=True)
        except EdgecodecError as exc:
            raise EdgecodecError(f"{where}: {exc}") from None
        data = {k: v for k, v in data.items() if k in fields}
        for key, value in data.items():
            want = type(getattr(default, key))
            ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))) or (
                key == "bench_threads" and isinstance(value, int)) or (want is float and isinstance(value, int))
            if not ok:
                raise EdgecodecError(f"{where}: '{key}' should be {want.__name__}, got {value!r}")
        recipe = cls(**data, method_options=method_values)
        recipe.check()
        return recipe

    def check(self) -> None:
        from edgecodec.quantize.methods import METHODS, method_options

        self.method_options = method_options(self.method_options, pipeline=True)
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise EdgecodecError(f"recipe: unknown method '{bad[0]}' (choose from {', '.join(METHODS)})")
        if not self.sizes:
            raise EdgecodecError("recipe: 'sizes' is empty")
        if min(self.max_images, self.calibration_samples, self.bench_runs) < 1 or self.bench_warmup < 0:
            raise EdgecodecError("recipe: max_images, calibration_samples and bench_runs must be at least 1")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        return {**d, **d.pop("method_options")}


# --- the steps ---------------------------------------------------------------------------------------

class Run:
    """Step bookkeeping: timing, status and the error of a failed step, in order."""

    def __init__(self, total: int):
        self.steps: list[dict] = []
        self.total = total

    def step(self, name: str, fn, *args, **kwargs):
        say(f"[{len(self.steps) + 1}/{self.total}] {name}")
        t0 = time.perf_counter()
        entry = {"step": name, "status": "ok"}
        try:
            result = fn(*args, **kwargs)
        except EdgecodecError as exc:  # a user-facing failure: record it and go on
            entry.update(status="failed", error=str(exc))
            say(f"{name}: failed: {exc}")
            result = None
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        self.steps.append(entry)
        return result


def verification_images(recipe: Recipe, multiple: int, sizes: list[tuple[int, int]]) -> list[tuple[str, np.ndarray]]:
    """The recipe's images, each fitted to the first size unless its padded size is a bundle size."""
    from edgecodec.quantize.calibration import fit_image, read_folder

    from edgecodec.imageio import sample_images

    if recipe.images == "samples":
        images = sorted(sample_images().items())
    else:
        if not Path(recipe.images).is_dir():
            raise EdgecodecError(f"recipe images {recipe.images!r}: not 'samples' and not a folder")
        images = read_folder(recipe.images, limit=recipe.max_images, notify=say)
    images = images[: recipe.max_images]
    if not images:
        raise EdgecodecError(f"no images in {recipe.images}")
    out = []
    for name, rgb in images:
        h, w = rgb.shape[:2]
        padded = (-(-h // multiple) * multiple, -(-w // multiple) * multiple)
        out.append((name, rgb if padded in sizes else fit_image(rgb, *sizes[0])))
    return out


def decoders_for(bundle_dir: str, bundle) -> list[tuple[str, object]]:
    """(runtime name, decoder) for the reference CPU backend of every graph format the bundle carries
    (runtimes.FORMATS), where it is usable and can decode every graph of the bundle."""
    from edgecodec.runtimes import bundle_problem, create_decoder, probe, reference_backends

    sizes = [tuple(g["size"]) for g in bundle.manifest["graphs"]]
    return [(name, create_decoder(name, bundle=bundle_dir)) for name in reference_backends(bundle.manifest)
            if probe(name)[0] and not any(bundle_problem(name, bundle.manifest, s) for s in sizes)]


TEACHER_BUNDLE = "teacher-fp32"


def verify(teacher, deployed, bundles: dict[str, str], images, rates: list[int], recipe: Recipe) -> dict:
    """Decode every image at every rate with the teacher and the deployed model in torch (the FP32
    references) and with every runtime of every bundle, all from the same streams: PSNR against the
    original, against the bundle's own model in torch and against the teacher, per rate; then the checks."""
    from edgecodec.bundle import open_bundle
    from edgecodec.export.parity import TOLERANCES
    from edgecodec.harness import compare, per_rate
    from edgecodec.runtimes import create_decoder

    from .evaluate import stream_cases

    cases = stream_cases(teacher, images, rates)  # the teacher's encoder: the student reads the same bytes
    models = {"teacher": teacher, "deployed": deployed}
    refs = {role: create_decoder("torch-cpu", model=m) for role, m in models.items()}
    ref_out = {role: {id(c): d.decode(c.data) for c in cases} for role, d in refs.items()}
    rows, checks = [], []
    keys = ("bpp", "psnr", "ms_ssim", "psnr_vs_reference")

    def record(label: str, role: str, precision: str, runtime: str, decoder, outs: dict):
        got = compare(cases, lambda c: outs[id(c)], reference=lambda c: ref_out[role][id(c)], with_ms_ssim=True)
        vs_teacher = per_rate(compare(cases, lambda c: outs[id(c)], reference=lambda c: ref_out["teacher"][id(c)]),
                              ("psnr_vs_reference",))
        for summary, t in zip(per_rate(got, keys), vs_teacher):
            mine = [r for r in got if r["rate"] == summary["rate"]]
            rows.append({"bundle": label, "model": models[role].name, "role": role, "precision": precision,
                         "runtime": runtime, "rate": summary["rate"], "device": decoder.info.device,
                         "images": len(mine), "bpp": summary["bpp"], "psnr": summary["psnr"],
                         "ms_ssim": summary["ms_ssim"],
                         "psnr_vs_fp32_reference": summary["psnr_vs_reference"],
                         "max_abs_vs_fp32_reference": max(r["max_abs_vs_reference"] for r in mine),
                         "psnr_vs_teacher": t["psnr_vs_reference"]})

    roles = ["teacher"] + (["deployed"] if deployed is not teacher else [])
    for role in roles:
        record("torch", role, "fp32", "torch-cpu", refs[role], ref_out[role])
    ref_psnr = {(r["role"], r["rate"]): r["psnr"] for r in rows}
    if deployed is not teacher:
        gap = max(ref_psnr[("teacher", r)] - ref_psnr[("deployed", r)] for r in rates)
        checks.append({"check": f"student {deployed.name} (FP32, torch) within {recipe.student_gap_db} dB of "
                                f"teacher {teacher.name} at every rate", "passed": gap <= recipe.student_gap_db,
                       "value": round(gap, 3)})
    for label, path in bundles.items():
        role = "teacher" if label == TEACHER_BUNDLE else "deployed"
        bundle = open_bundle(path)
        precision = bundle.manifest["precision"]
        for runtime, decoder in decoders_for(path, bundle):
            outs = {id(c): decoder.decode(c.data) for c in cases}
            again = decoder.decode(cases[0].data)
            record(label, role, precision, runtime, decoder, outs)
            checks.append({"check": f"{label} {runtime}: the same stream decodes to the same image twice",
                           "passed": bool(np.array_equal(again, outs[id(cases[0])]))})
            mine = [r for r in rows if r["bundle"] == label and r["runtime"] == runtime]
            if precision == "int8":
                drop = max(ref_psnr[(role, r["rate"])] - r["psnr"] for r in mine)
                checks.append({"check": f"{label} {runtime}: PSNR drop against FP32 at most "
                                        f"{recipe.quality_drop_db} dB at every rate", "passed": drop <= recipe.quality_drop_db,
                               "value": round(drop, 3)})
            else:
                worst = min(r["psnr_vs_fp32_reference"] for r in mine)
                tol = TOLERANCES[precision].min_psnr
                checks.append({"check": f"{label} {runtime}: agrees with torch (PSNR at least {tol} dB)",
                               "passed": worst >= tol, "value": round(worst, 2)})
    return {"reference": "torch-cpu fp32 of each bundle's own model", "streams": len(cases), "rows": rows,
            "checks": checks}


def deployed_model(recipe: Recipe, teacher, out: Path):
    """The model the pipeline deploys: the teacher, a given student, or one distilled now."""
    from edgecodec.weights import load_model

    if not recipe.student:
        return teacher
    if recipe.distill_data:
        from .distill import DistillRecipe, Distiller, student_config

        distiller = Distiller(teacher, student_config(teacher, recipe.student), recipe.distill_data,
                              str(out / "distill"), DistillRecipe(steps=recipe.distill_steps))
        distiller.run(progress=False)
        return load_model(str(out / "distill" / "student.safetensors"))
    student = load_model(recipe.student)
    if student.codec.stream_spec().fingerprint != teacher.codec.stream_spec().fingerprint:
        raise EdgecodecError(f"student {recipe.student} does not read teacher {recipe.model}'s streams "
                             f"(fingerprints differ): distil it from that teacher")
    return student


def run_pipeline(recipe: Recipe, out_dir: str) -> dict:
    from edgecodec.benchmarks.baselines import rd_points
    from edgecodec.benchmarks.machine import machine_info
    from edgecodec.benchmarks.output import write_reports
    from edgecodec.benchmarks.runner import BenchConfig, run_bench
    from edgecodec.export.exporter import export_bundle, parse_sizes
    from edgecodec.quantize.bundle import QuantizeOptions, quantize_bundle
    from edgecodec.quantize.calibration import sets_from_images, build_sets

    from .evaluate import parse_rates
    from edgecodec.flops import stage_flops
    from edgecodec.imageio import write_text_atomic

    from .report_html import to_html
    from edgecodec.weights import load_model

    recipe.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    teacher = load_model(recipe.model)
    multiple = teacher.codec.cfg.multiple
    sizes = parse_sizes(",".join(recipe.sizes), multiple)
    rates = parse_rates(recipe.rates, teacher.codec.cfg.num_rates)
    images = verification_images(recipe, multiple, sizes)
    distilling = bool(recipe.student and recipe.distill_data)
    run = Run(total=6 + int(bool(recipe.student)) + len(recipe.methods))

    bundles: dict[str, str] = {}
    if recipe.student:
        b = run.step("export the teacher FP32", export_bundle, teacher, str(out / TEACHER_BUNDLE), recipe.formats,
                     "fp32", sizes, say=say)
        if b is not None:
            bundles[TEACHER_BUNDLE] = str(b.root)
    loaded = run.step(f"distil student {recipe.student} from {teacher.name}" if distilling
                      else "load the deployed model", deployed_model, recipe, teacher, out)
    if loaded is None:
        loaded = teacher
    fp32 = run.step("export FP32", export_bundle, loaded, str(out / "fp32"), recipe.formats, "fp32", sizes,
                    say=say)
    if fp32 is not None:
        bundles["fp32"] = str(fp32.root)

    def calibration():
        if recipe.images == "samples":
            return {s: sets_from_images(loaded.codec, images, recipe.calibration_samples, s,
                                        validation=min(recipe.calibration_samples, 8),
                                        source="the sample photos (scikit-learn)") for s in sizes}
        return {s: build_sets(loaded.codec, recipe.images, recipe.calibration_samples, s) for s in sizes}

    sets = run.step("calibration items (encoded and parsed as at decode time)", calibration)
    quant = {}
    for method in recipe.methods:
        options = QuantizeOptions(method=method, formats=list(recipe.formats), samples=recipe.calibration_samples,
                                  method_options=dict(recipe.method_options),
                                  allow_parity_failure=True)  # verify judges INT8 quality against FP32
        b = run.step(f"quantize INT8 ({method})", quantize_bundle, loaded, str(out / f"int8-{method}"), sizes,
                     options, sets=sets, say=say) if sets else None
        if b is not None:
            bundles[f"int8-{method}"] = str(b.root)
            quant[f"int8-{method}"] = _quantization_summary(b.manifest)
    quality = run.step("verify quality and runtime agreement", verify, teacher, loaded, bundles, images, rates,
                       recipe) if bundles else None
    bench = None
    if bundles:
        config = BenchConfig(bundle=list(bundles.values()), runtimes=recipe.runtimes, runs=recipe.bench_runs,
                             warmup=recipe.bench_warmup, threads=recipe.bench_threads)
        bench = run.step("bench every runtime and precision", run_bench, config,
                         say=lambda m: say(f"bench: {m}"))
        if bench is not None:
            write_reports(bench, str(out / "bench.json"), str(out / "bench.md"), str(out / "bench.html"))
    baselines = run.step("JPEG and WebP on the same images", lambda: {
        fmt: rd_points(dict(images), fmt) for fmt in ("jpeg", "webp")})
    checks = list((quality or {}).get("checks", []))
    checks += [{"check": f"step '{s['step']}' ran", "passed": s["status"] == "ok"} for s in run.steps]
    report = {
        "schema": SCHEMA,
        "recipe": recipe.to_json(),
        "model": {"name": loaded.name, "source": loaded.source, "trained": loaded.trained,
                  "fingerprint": loaded.codec.stream_spec().fingerprint.hex()},
        "teacher": {"name": teacher.name, "source": teacher.source, "trained": teacher.trained},
        "gflops": {role: {k: v / 1e9 for k, v in stage_flops(m.codec.cfg, *sizes[0]).items()}
                   for role, m in (("teacher", teacher), ("deployed", loaded))},
        "machine": machine_info(),
        "sizes": [list(s) for s in sizes],
        "images": [{"name": n, "size": list(rgb.shape[:2])} for n, rgb in images],
        "bundles": bundles,
        "steps": run.steps,
        "quantization": quant,
        "quality": quality,
        "baselines": baselines,
        "bench": bench,
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    text = json.dumps(report, indent=2, default=str) + "\n"
    report = json.loads(text)  # what `edgecodec report RUN_DIR` reads back, so both render the same bytes
    write_text_atomic(out / "report.json", text)
    write_text_atomic(out / "report.md", to_markdown(report))
    write_text_atomic(out / "report.html", to_html(report))
    return report


def _quantization_summary(manifest: dict) -> dict:
    q = manifest["quantization"]
    return {"method": q["method"], "calibration_items": q["calibration"]["items_per_size"],
            "quantized_ops": q.get("quantized_ops"), "float": q.get("float"),
            "quality": q.get("quality", {}).get("validation"),
            "parity_passed": manifest.get("parity", {}).get("passed")}


# --- the report --------------------------------------------------------------------------------------

def to_markdown(report: dict) -> str:
    from edgecodec.benchmarks.machine import machine_line
    from edgecodec.benchmarks.report import latency_table

    m = report["model"]
    lines = ["# edgecodec pipeline report", "",
             f"**Model:** {m['name']} ({m['source']}, fingerprint {m['fingerprint']}). "
             f"**Sizes:** {', '.join(f'{h}x{w}' for h, w in report['sizes'])}. "
             f"**Images:** {', '.join(i['name'] for i in report['images'])}. "
             f"**Machine:** {machine_line(report['machine'])}. **Wall time:** {report['wall_s']:.0f} s.", "",
             f"**Result:** {'all checks passed' if report['passed'] else 'some checks FAILED'}.", "",
             "## Steps", "", "| step | status | seconds |", "|---|---|--:|"]
    lines += [f"| {s['step']} | {s['status']}{': ' + s['error'] if s.get('error') else ''} | {s['seconds']:.1f} |"
              for s in report["steps"]]
    if report.get("quality"):
        lines += side_by_side(report)
        lines += ["", "## Quality", "",
                  "Every image encoded at every rate by the teacher's encoder (the student reads the same streams), "
                  "decoded by torch (each model's FP32 reference) and by each runtime of each bundle. PSNR against "
                  "the original; \"vs FP32\" is the PSNR against the bundle's own model in torch, \"vs teacher\" "
                  "against the teacher in torch; max |diff| is in 8-bit levels.", "",
                  "| bundle | model | runtime | rate | bpp | PSNR dB | drop vs FP32 dB | vs FP32 dB | vs teacher dB | max diff |",
                  "|---|---|---|--:|--:|--:|--:|--:|--:|--:|"]
        ref = {(r["role"], r["rate"]): r["psnr"] for r in report["quality"]["rows"] if r["bundle"] == "torch"}
        for r in report["quality"]["rows"]:
            lines.append(f"| {r['bundle']} | {r['model']} | {r['runtime']} | {r['rate']} | {r['bpp']:.4f} | "
                         f"{r['psnr']:.2f} | {ref[(r['role'], r['rate'])] - r['psnr']:+.2f} | "
                         f"{r['psnr_vs_fp32_reference']:.1f} | {r['psnr_vs_teacher']:.1f} | "
                         f"{r['max_abs_vs_fp32_reference']} |")
    if report.get("quantization"):
        lines += ["", "## INT8 bundles", "", "| bundle | method | calibration items | INT8 layers | "
                  "validation drop (per runtime) |", "|---|---|--:|--:|---|"]
        for label, q in report["quantization"].items():
            drops = ", ".join(f"{rt} {v['drop_db']:+.2f} dB" for rt, v in (q.get("quality") or {}).items())
            lines.append(f"| {label} | {q['method']} | {q['calibration_items']} | {q['quantized_ops']} | {drops} |")
    if report.get("bench"):
        lines += ["", "## Latency", "", "From bench.json (full report with stage times in bench.md, charts in bench.html).", ""]
        lines += latency_table(report["bench"])
    lines += ["", "## Checks", ""]
    lines += [f"- {'PASS' if c['passed'] else 'FAIL'}: {c['check']}"
              + (f" ({c['value']})" if c.get("value") is not None else "") for c in report["checks"]]
    return "\n".join(lines) + "\n"


def side_by_side(report: dict) -> list[str]:
    """Teacher FP32, deployed FP32 and deployed INT8 per rate (PSNR vs the original, and vs the teacher),
    then GFLOPs per stage; INT8 is the best INT8 bundle on the OpenVINO CPU runtime where it ran."""
    rows = report["quality"]["rows"]
    rates = sorted({r["rate"] for r in rows})

    def pick(**want):
        found = [r for r in rows if all(r.get(k) == v for k, v in want.items())]
        return {r["rate"]: r for r in found}

    columns = [("teacher FP32 (torch)", pick(role="teacher", bundle="torch"))]
    if report["model"]["name"] != report["teacher"]["name"]:
        columns.append((f"{report['model']['name']} FP32 (torch)", pick(role="deployed", bundle="torch")))
    int8 = sorted({r["bundle"] for r in rows if r["precision"] == "int8"})
    if int8:
        best = max(int8, key=lambda b: sum(r["psnr"] for r in rows if r["bundle"] == b))
        runtime = "openvino-cpu" if pick(bundle=best, runtime="openvino-cpu") else \
            next(r["runtime"] for r in rows if r["bundle"] == best)
        columns.append((f"{report['model']['name']} {best} ({runtime})", pick(bundle=best, runtime=runtime)))
    lines = ["", "## Teacher and deployed decoder side by side", "",
             "PSNR against the original (dB); in brackets, against the teacher's own decode.", "",
             "| rate | bpp | " + " | ".join(name for name, _ in columns) + " |",
             "|--:|--:|" + "--:|" * len(columns)]
    for rate in rates:
        cells = [f"{col[rate]['psnr']:.2f} ({min(col[rate]['psnr_vs_teacher'], 99.9):.1f})" if rate in col else "–"
                 for _, col in columns]
        lines.append(f"| {rate} | {columns[0][1][rate]['bpp']:.4f} | " + " | ".join(cells) + " |")
    gf = report.get("gflops") or {}
    if gf:
        stages = list(dict.fromkeys(k for g in gf.values() for k in g))
        h, w = report["sizes"][0]
        lines += ["", f"GFLOPs per decode at {h}x{w}:", "", "| model | " + " | ".join(stages) + " |",
                  "|---|" + "--:|" * len(stages)]
        names = {"teacher": report["teacher"]["name"], "deployed": report["model"]["name"]}
        for role, g in gf.items():
            if role == "deployed" and names["deployed"] == names["teacher"]:
                continue
            lines.append(f"| {names[role]} | " + " | ".join(f"{g.get(k, 0.0):.2f}" for k in stages) + " |")
    return lines


__all__ = ["Recipe", "run_pipeline", "side_by_side", "to_markdown", "verify"]
