"""`edgecodec quantize`: calibration items -> INT8 decode graphs (PTQ, accuracy-controlled PTQ or QAT)
-> ONNX (standard Q/DQ) and OpenVINO INT8 IR -> quality and parity -> a bundle like `edgecodec export`'s.

The bundle has the export layout (BundleWriter: staged, checksummed, renamed into place), with
`"precision": "int8"` and a `"quantization"` section: method, calibration set (size and source),
preset per format, overflow fix and why, what stayed in float and why, what NNCF did, and the measured
quality (PSNR against the original images of the FP32 and the INT8 decoders, and the drop).
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecodec.console import progress
from edgecodec.errors import BundleError, EdgecodecError
from edgecodec.export.bundle import Bundle, BundleWriter
from edgecodec.weights import LoadedModel

from .calibration import CalibrationSets, build_sets, psnr_vs_original
from .scheme import quiet_nncf

METHODS = ("ptq", "accuracy", "qat")
FORMATS = ("onnx", "openvino")


@dataclass
class QuantizeOptions:
    method: str = "ptq"
    formats: list[str] = field(default_factory=lambda: ["onnx", "openvino"])
    samples: int = 16
    validation: int | None = None  # validation items (default min(samples, 8))
    max_drop: float = 0.5  # dB, accuracy method
    overflow: str = "auto"
    qat_steps: int = 100
    qat_lr: float = 1e-6
    qat_batch: int = 4
    parity_images: int = 2
    max_iterations: int | None = None  # accuracy method: cap on revert iterations
    allow_parity_failure: bool = False  # write the bundle (parity recorded as failed) instead of refusing

    def check(self) -> None:
        if self.method not in METHODS:
            raise EdgecodecError(f"unknown method {self.method}: choose from {', '.join(METHODS)}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise EdgecodecError(f"unknown format {bad[0] if bad else '(none)'}: choose from {', '.join(FORMATS)}")
        if self.samples < 1:
            raise EdgecodecError(f"--samples must be at least 1, got {self.samples}")
        if self.max_drop < 0:
            raise EdgecodecError(f"--max-drop must be >= 0 dB, got {self.max_drop}")
        if self.qat_steps < 0:
            raise EdgecodecError(f"--qat-steps must be >= 0, got {self.qat_steps}")
        from .scheme import OVERFLOW_CHOICES

        if self.overflow not in OVERFLOW_CHOICES:
            raise EdgecodecError(f"unknown overflow fix {self.overflow!r}: choose from {', '.join(OVERFLOW_CHOICES)}")


def _targets(formats: list[str]) -> list[str]:
    return [f for f in FORMATS if f in formats]


def quantize_bundle(loaded: LoadedModel, out: str, sizes: list[tuple[int, int]], options: QuantizeOptions,
                    calib_dir: str | None = None, sets: dict[tuple[int, int], CalibrationSets] | None = None,
                    say: Callable[[str], None] = lambda m: None) -> Bundle:
    """Quantize `loaded`'s decoder for every size and write an INT8 bundle to `out`.

    Calibration items come from `calib_dir` (calibration.build_sets) or, ready-made, from `sets`."""
    from edgecodec.benchmarks.flops import decode_flops
    from edgecodec.export.exporter import TOLERANCES, tool_versions
    from edgecodec.export.onnx_export import io_description
    from edgecodec.export.parity import measure_parity

    options.check()
    codec = loaded.codec.cpu().eval()
    spec = codec.stream_spec()
    if sets is None:
        if calib_dir is None:
            raise EdgecodecError("quantize needs calibration images: pass --calib DIR")
        sets = {}
        for size in sizes:
            say(f"building {options.samples} calibration items at {size[0]}x{size[1]} from {calib_dir}")
            sets[size] = build_sets(codec, calib_dir, options.samples, size, options.validation, notify=say)
    missing = [s for s in sizes if s not in sets]
    if missing:
        raise EdgecodecError(f"no calibration items for size {missing[0][0]}x{missing[0][1]}")

    tmp = Path(tempfile.mkdtemp(prefix="edgecodec-quantize-"))
    try:
        with quiet_nncf(), BundleWriter(out) as writer:
            if options.method == "qat":
                graphs, section = _qat(loaded, writer, tmp, sizes, sets, options, say)
            else:
                graphs, section = _ptq(codec, writer, tmp, sizes, sets, options, say)
            for g in graphs:
                h, w = g["size"]
                g.update(gflops=decode_flops(codec.cfg, h, w) / 1e9, **io_description(codec, h, w))
            first = sets[sizes[0]]
            section = {
                "method": options.method,
                "tool": f"nncf {tool_versions().get('nncf', '?')}",
                "calibration": {"items_per_size": options.samples,
                                "sizes": {f"{h}x{w}": sets[(h, w)].describe() for h, w in sizes},
                                "source": first.source.get("directory")},
                **section,
            }
            manifest = {
                "model": {"name": loaded.name, "source": loaded.source, "trained": loaded.trained,
                          "fingerprint": spec.fingerprint.hex(), "config": codec.cfg.to_json()},
                "precision": "int8",
                "stream_spec": spec.to_json(),
                "graphs": graphs,
                "noise_rule": {"generator": "numpy PCG64(seed).standard_normal(float32)",
                               "shape": "1 x C x H/16 x W/16", "rates": spec.to_json()["rates"]},
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "tools": tool_versions(),
                "quantization": section,
            }
            staged = writer.write_manifest(manifest)
            say("measuring PSNR against the original images (FP32 vs INT8)")
            section["quality"] = measure_quality(loaded, staged, {s: sets[s] for s in sizes})
            say("measuring parity against the torch decoder on real photos")
            tol = TOLERANCES["int8"]
            parity = measure_parity(loaded, staged, images=options.parity_images)
            parity["tolerance"] = {"max_abs": tol.max_abs, "min_psnr": tol.min_psnr}
            failed = [r for r, v in parity["worst"].items() if v["max_abs"] > tol.max_abs or v["min_psnr"] < tol.min_psnr]
            parity["passed"] = not failed
            if failed:
                worst = parity["worst"][failed[0]]
                msg = (f"parity check failed: {failed[0]} differs from torch by up to {worst['max_abs']:.2e} "
                       f"(PSNR {worst['min_psnr']:.1f} dB); tolerance {tol.max_abs} / {tol.min_psnr} dB for int8")
                if not options.allow_parity_failure:
                    raise BundleError(msg + "; no bundle written (--allow-parity-failure writes it anyway, "
                                            "--method qat or accuracy may do better)")
                say("warning: " + msg + "; writing the bundle as asked, with parity.passed = false")
            manifest["parity"] = parity
            return writer.commit(manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- PTQ and accuracy-controlled PTQ ---------------------------------------------------------------

def _ptq(codec, writer, tmp: Path, sizes, sets, options: QuantizeOptions, say):
    import onnx

    from .accuracy import quantize_with_accuracy_control
    from .ptq import (
        export_fp32_onnx,
        ort_cpu_kernels,
        prepare_fp32,
        quantize_onnx,
        runtime_precisions,
        save_onnx,
        to_openvino,
    )
    from .qdq import check_standard_qdq

    graphs, per_graph, schemes = [], [], {}
    for h, w in sizes:
        stem = f"decoder_{h}x{w}"
        items = sets[(h, w)]
        fp32_path = tmp / f"{stem}.fp32.onnx"
        say(f"exporting the FP32 decode graph at {h}x{w}")
        export_fp32_onnx(codec, h, w, fp32_path)
        files, record = {}, {"size": [h, w], "fp32_onnx_bytes": fp32_path.stat().st_size}
        fp32 = onnx.load(str(fp32_path))
        record["fp32_graph_preparation"] = prepare_fp32(fp32)
        fp32_bytes = fp32.SerializeToString()
        for target in _targets(options.formats):
            model = onnx.load_from_string(fp32_bytes)
            if options.method == "accuracy":
                say(f"accuracy-controlled PTQ for {target} at {h}x{w} (max drop {options.max_drop} dB)")
                q, scheme, log = quantize_with_accuracy_control(
                    model, items.calibration, items.validation, target, options.max_drop, options.overflow,
                    options.max_iterations)
            else:
                say(f"PTQ for {target} at {h}x{w} ({scheme_preset(target)} preset, "
                    f"{len(items.calibration)} items)")
                q, scheme, log = quantize_onnx(model, items.calibration, target, options.overflow)
            schemes.setdefault(target, scheme)
            if target == "onnx":
                path = writer.path(stem + ".onnx")
                save_onnx(q, path)
                record["onnx"] = {"nncf": log, "qdq": check_standard_qdq(q, need_tensorrt=True),
                                  "onnxruntime_cpu": ort_cpu_kernels(path, tmp / "ort-optimized.onnx"),
                                  "bytes": path.stat().st_size}
                files["onnx"] = path.name
            else:
                src = tmp / f"{stem}.openvino.onnx"
                save_onnx(q, src)
                qdq = check_standard_qdq(q)
                xml = writer.path(stem + ".xml")
                say(f"converting the {h}x{w} INT8 graph to OpenVINO IR")
                ir = to_openvino(src, xml)
                ir["cpu_runtime_precisions"] = runtime_precisions(xml)
                record["openvino"] = {"nncf": log, "qdq": qdq, "ir": ir,
                                      "bytes": xml.stat().st_size + xml.with_suffix(".bin").stat().st_size}
                files.update(openvino=xml.name, openvino_weights=xml.with_suffix(".bin").name)
        graphs.append({"size": [h, w], "files": files})
        per_graph.append(record)
    section = _scheme_section(schemes)
    section["graphs"] = per_graph
    if options.method == "accuracy":
        section["accuracy_control"] = {
            "max_drop_db": options.max_drop, "drop_type": "ABSOLUTE",
            "metric": "mean PSNR (dB) of the decoded image against the original image",
            "results": [{"size": r["size"], "format": t, **{k: v for k, v in r[t]["nncf"].items()
                                                            if k not in ("algorithm", "metric")}}
                        for r in per_graph for t in FORMATS if t in r]}
    return graphs, section


def scheme_preset(target: str) -> str:
    from .scheme import PRESETS

    return PRESETS[target]


def _scheme_section(schemes: dict) -> dict:
    first = next(iter(schemes.values()))
    desc = first.describe()
    return {
        "preset": {t: s.preset for t, s in schemes.items()},
        "overflow_fix": {"value": first.overflow_fix, "reason": first.overflow_reason, "cpu": first.cpu},
        "activation_ranges": desc["activation_ranges"],
        "weights": desc["weights"],
        "activations": {t: s.describe()["activations"] for t, s in schemes.items()},
        "quantized_ops": desc["quantized_ops"],
        "quantized_types": desc["quantized_types"],
        "float": desc["float"],
    }


# --- QAT -----------------------------------------------------------------------------------------

def _qat(loaded, writer, tmp: Path, sizes, sets, options: QuantizeOptions, say):
    import onnx

    from . import qat
    from .ptq import ort_cpu_kernels, runtime_precisions, to_openvino
    from .qdq import check_standard_qdq

    codec = loaded.codec.cpu().eval()
    first = sets[sizes[0]]
    say(f"quantizing the torch decoder with NNCF ({len(first.calibration)} calibration items)")
    student, scheme = qat.quantize_decoder(codec, first.calibration, options.overflow)
    teacher = qat.decode_graph(codec)
    validation = [i for s in sizes for i in sets[s].validation]
    train_items = [i for s in sizes for i in sets[s].calibration]
    before = qat.psnr_vs_teacher(student, teacher, validation)
    say(f"QAT: {options.qat_steps} distillation steps (teacher: the FP32 decoder)")
    with progress(options.qat_steps, "qat", unit="step") as bar:  # progress bar on stderr
        log = qat.train(student, teacher, train_items, options.qat_steps, options.qat_lr, options.qat_batch,
                        progress=lambda: bar.update())
    log["psnr_vs_fp32_before_db"] = before
    log["psnr_vs_fp32_after_db"] = qat.psnr_vs_teacher(student, teacher, validation)
    ckpt = writer.path("qat_checkpoint.pt")
    qat.save_checkpoint(student, codec, ckpt, extra={"sizes": [list(s) for s in sizes]})
    restored = qat.load_checkpoint(ckpt, codec)
    log["checkpoint"] = {"file": ckpt.name, "contents": "state_dict + nncf.torch.get_config",
                         "restore": "nncf.torch.load_from_config on a fresh DecodeGraph, then load_state_dict",
                         **qat.restore_check(student, restored, validation)}
    if not log["checkpoint"]["identical"]:
        raise BundleError(f"QAT checkpoint does not restore to the trained model "
                          f"(max |diff| {log['checkpoint']['max_abs_diff']:.2e})")
    graphs, per_graph = [], []
    for h, w in sizes:
        stem = f"decoder_{h}x{w}"
        src = tmp / f"{stem}.qat.onnx"
        say(f"exporting the restored QAT decoder at {h}x{w} (ONNX Q/DQ export mode)")
        qat.export_onnx(restored, codec, h, w, src)
        qdq = check_standard_qdq(onnx.load(str(src)), need_tensorrt=True)
        files, record = {}, {"size": [h, w]}
        if "onnx" in options.formats:
            path = writer.path(stem + ".onnx")
            shutil.copyfile(src, path)
            files["onnx"] = path.name
            record["onnx"] = {"qdq": qdq, "onnxruntime_cpu": ort_cpu_kernels(path, tmp / "ort-optimized.onnx"),
                              "bytes": path.stat().st_size}
        if "openvino" in options.formats:
            xml = writer.path(stem + ".xml")
            ir = to_openvino(src, xml)
            ir["cpu_runtime_precisions"] = runtime_precisions(xml)
            files.update(openvino=xml.name, openvino_weights=xml.with_suffix(".bin").name)
            record["openvino"] = {"qdq": qdq, "ir": ir,
                                  "bytes": xml.stat().st_size + xml.with_suffix(".bin").stat().st_size}
        graphs.append({"size": [h, w], "files": files})
        per_graph.append(record)
    section = _scheme_section({t: scheme for t in _targets(options.formats)})  # one model feeds both
    section["graphs"] = per_graph
    section["qat"] = {"nncf": "nncf.quantize (torch backend) of DecodeGraph, then fine-tuned; quantizer "
                              "scales are trained parameters", "teacher": "the FP32 decoder", **log}
    return graphs, section


# --- quality ---------------------------------------------------------------------------------------

def measure_quality(loaded: LoadedModel, bundle, sets: dict[tuple[int, int], CalibrationSets]) -> dict:
    """PSNR against the original images of the FP32 decoder (torch, eager) and of every INT8 runtime
    in the bundle, on the calibration and validation items, and the drop in dB."""
    import torch

    from edgecodec.export.parity import bundle_runtimes
    from edgecodec.frames import to_image
    from edgecodec.metrics import psnr

    from .qat import decode_graph

    reference = decode_graph(loaded.codec.cpu().eval())
    runtimes = bundle_runtimes(bundle)
    rows = []
    for (h, w), s in sets.items():
        for split, items in (("calibration", s.calibration), ("validation", s.validation)):
            with torch.no_grad():
                ref = [reference(*i.tensors()).numpy() for i in items]
            p_ref = [psnr_vs_original(i, o) for i, o in zip(items, ref)]
            for rt in runtimes:
                outs = [rt.run_graph(i.indices, i.noise, i.rate) for i in items]
                p_q = [psnr_vs_original(i, o) for i, o in zip(items, outs)]
                vs = [min(psnr(to_image(a, h, w), to_image(b, h, w)), 100.0) for a, b in zip(outs, ref)]
                drops = [a - b for a, b in zip(p_ref, p_q)]
                rows.append({"runtime": rt.name, "size": [h, w], "set": split, "items": len(items),
                             "psnr_fp32_db": float(np.mean(p_ref)), "psnr_int8_db": float(np.mean(p_q)),
                             "drop_db": float(np.mean(p_ref) - np.mean(p_q)), "worst_item_drop_db": float(max(drops)),
                             "psnr_int8_vs_fp32_db": float(np.mean(vs)), "min_psnr_int8_vs_fp32_db": float(min(vs))})
    summary = {}
    for rt in sorted({r["runtime"] for r in rows}):
        mine = [r for r in rows if r["runtime"] == rt and r["set"] == "validation"]
        summary[rt] = {"psnr_fp32_db": float(np.mean([r["psnr_fp32_db"] for r in mine])),
                       "psnr_int8_db": float(np.mean([r["psnr_int8_db"] for r in mine])),
                       "drop_db": float(np.mean([r["drop_db"] for r in mine])),
                       "psnr_int8_vs_fp32_db": float(np.mean([r["psnr_int8_vs_fp32_db"] for r in mine]))}
    return {"reference": "torch-cpu fp32 (eager DecodeGraph)", "metric": "PSNR (dB) vs the original image",
            "validation": summary, "results": rows}


__all__ = ["METHODS", "QuantizeOptions", "measure_quality", "quantize_bundle"]
