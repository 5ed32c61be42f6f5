"""`edgecodec quantize`: calibration items -> INT8 decode graphs (PTQ, accuracy-controlled PTQ or QAT)
-> ONNX (standard Q/DQ) and OpenVINO INT8 IR -> quality and parity -> a bundle like `edgecodec export`'s.

The bundle has the export layout (BundleWriter: staged, checksummed, renamed into place), with
`"precision": "int8"` and a `"quantization"` section: method, calibration set (size and source),
preset per format, overflow fix and why, what stayed in float and why, what NNCF did, and the measured
quality (PSNR against the original images of the FP32 and the INT8 decoders, and the drop).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgecodec.bundle import Bundle, BundleWriter, Manifest
from edgecodec.errors import EdgecodecError
from edgecodec.weights import LoadedModel
from edgecodec.zoo import DecodeGraph

from .calibration import CalibrationSets, build_sets
from .methods import METHODS, check_method, method_options
from .scheme import PRESETS, quiet_nncf, scheme_section


@dataclass
class QuantizeOptions:
    """What every method shares; each method's own options (methods.py) are in `method_options`."""

    method: str = "ptq"
    formats: list[str] = field(default_factory=lambda: ["onnx", "openvino"])
    samples: int = 16
    validation: int | None = None  # validation items (default min(samples, 8))
    overflow: str = "auto"
    parity_images: int = 2
    allow_parity_failure: bool = False  # write the bundle (parity recorded as failed) instead of refusing
    method_options: dict = field(default_factory=dict)

    def check(self) -> None:
        from edgecodec.export.exporter import check_formats

        check_method(self.method)
        self.formats = check_formats(self.formats)
        if self.samples < 1:
            raise EdgecodecError(f"--samples must be at least 1, got {self.samples}")
        self.method_options = method_options(self.method_options)
        from .scheme import OVERFLOW_CHOICES

        if self.overflow not in OVERFLOW_CHOICES:
            raise EdgecodecError(f"unknown overflow fix {self.overflow!r}: choose from {', '.join(OVERFLOW_CHOICES)}")

    def own(self) -> dict:
        """The chosen method's own options."""
        return {o.name: self.method_options[o.name] for o in METHODS[self.method].options}


def quantize_bundle(loaded: LoadedModel, out: str, sizes: list[tuple[int, int]], options: QuantizeOptions,
                    calib_dir: str | None = None, sets: dict[tuple[int, int], CalibrationSets] | None = None,
                    say: Callable[[str], None] = lambda m: None) -> Bundle:
    """Quantize `loaded`'s decoder for every size and write an INT8 bundle to `out`.

    Calibration items come from `calib_dir` (calibration.build_sets) or, ready-made, from `sets`."""
    from edgecodec.bundle import tool_versions
    from edgecodec.export.exporter import graph_record, stamp_graphs, write_encoder
    from edgecodec.export.parity import parity_gate

    from edgecodec.zoo import require_vq_stream

    require_vq_stream(loaded.codec, "INT8 quantization")
    options.check()
    codec = loaded.codec.cpu().eval()
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

    method = METHODS[options.method]
    tmp = Path(tempfile.mkdtemp(prefix="edgecodec-quantize-"))
    try:
        with quiet_nncf(), BundleWriter(out) as writer:
            if method.kind == "model":
                graphs, section = method.function()(loaded, writer, tmp, sizes, sets, options, say)
            else:
                graphs, section = _graph_method(codec, writer, tmp, sizes, sets, options, say)
            # the encoder stays FP32: a flipped index is another stream
            graphs = [graph_record(codec, *g["size"], g["files"],
                                   write_encoder(codec, writer, *g["size"], options.formats, tmp, say))
                      for g in graphs]
            first = sets[sizes[0]]
            section = {
                "method": options.method,
                "options": options.own(),
                "tool": f"nncf {tool_versions().get('nncf', '?')}",
                "calibration": {"items_per_size": options.samples,
                                "sizes": {f"{h}x{w}": sets[(h, w)].describe() for h, w in sizes},
                                "source": first.source.get("directory")},
                **section,
            }
            stamp_graphs(writer, graphs, codec.stream_spec().fingerprint)
            manifest = Manifest.for_model(loaded, "int8", graphs, quantization=section)
            staged = writer.write_manifest(manifest)
            say("measuring PSNR against the original images (FP32 vs INT8)")
            section["quality"] = measure_quality(loaded, staged, {s: sets[s] for s in sizes})
            say("measuring parity against the torch decoder on real photos")
            manifest.parity = parity_gate(
                loaded, staged, "int8", options.parity_images, allow_failure=options.allow_parity_failure,
                hint="--allow-parity-failure writes it anyway, --method qat or accuracy may do better", say=say)
            return writer.commit(manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- graph methods (PTQ, accuracy-controlled PTQ) ----------------------------------------------------

def _graph_method(codec, writer, tmp: Path, sizes, sets, options: QuantizeOptions, say):
    import onnx

    from .ptq import export_fp32_onnx, ort_cpu_kernels, prepare_fp32, runtime_precisions, save_onnx, to_openvino
    from .qdq import check_standard_qdq

    method = METHODS[options.method]
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
        for target in options.formats:
            say(f"{method.name} for {target} at {h}x{w} ({PRESETS[target]} preset, "
                f"{len(items.calibration)} calibration items)")
            q, scheme, log = method.function()(onnx.load_from_string(fp32_bytes), items, target, options.overflow,
                                               codec.float_layers, **options.own())
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
    section = scheme_section(schemes)
    section["graphs"] = per_graph
    if options.method == "accuracy":
        section["accuracy_control"] = {
            "max_drop_db": options.own()["max_drop"], "drop_type": "ABSOLUTE",
            "metric": "mean PSNR (dB) of the decoded image against the original image",
            "results": [{"size": r["size"], "format": t, **{k: v for k, v in r[t]["nncf"].items()
                                                            if k not in ("algorithm", "metric")}}
                        for r in per_graph for t in options.formats if t in r]}
    return graphs, section


# --- quality ---------------------------------------------------------------------------------------

def measure_quality(loaded: LoadedModel, bundle, sets: dict[tuple[int, int], CalibrationSets]) -> dict:
    """PSNR against the original images of the FP32 decoder (torch, eager) and of every INT8 runtime
    in the bundle, on the calibration and validation items, and the drop in dB."""
    import torch

    from edgecodec.export.parity import bundle_runtimes
    from edgecodec.harness import compare

    from .calibration import cases

    reference, done = DecodeGraph(loaded.codec.cpu().eval()).eval(), {}

    def run_reference(case):  # once per item, however many runtimes compare against it
        key = id(case.inputs)
        if key not in done:
            with torch.no_grad():
                done[key] = reference(*case.inputs.tensors()).numpy()
        return done[key]

    runtimes = bundle_runtimes(bundle)
    rows = []
    for (h, w), s in sets.items():
        for split, items in (("calibration", s.calibration), ("validation", s.validation)):
            for rt in runtimes:
                got = compare(cases(items), lambda c, rt=rt: rt.run_graph(c.inputs.indices, c.inputs.noise, c.rate),
                              reference=run_reference)
                drops = [r["psnr_reference"] - r["psnr"] for r in got]
                mean = lambda k: float(np.mean([r[k] for r in got]))  # noqa: E731
                rows.append({"runtime": rt.name, "size": [h, w], "set": split, "items": len(items),
                             "psnr_fp32_db": mean("psnr_reference"), "psnr_int8_db": mean("psnr"),
                             "drop_db": mean("psnr_reference") - mean("psnr"), "worst_item_drop_db": float(max(drops)),
                             "psnr_int8_vs_fp32_db": mean("psnr_vs_reference"),
                             "min_psnr_int8_vs_fp32_db": float(min(r["psnr_vs_reference"] for r in got))})
    summary = {}
    for rt in sorted({r["runtime"] for r in rows}):
        mine = [r for r in rows if r["runtime"] == rt and r["set"] == "validation"]
        summary[rt] = {k: float(np.mean([r[k] for r in mine]))
                       for k in ("psnr_fp32_db", "psnr_int8_db", "drop_db", "psnr_int8_vs_fp32_db")}
    return {"reference": "torch-cpu fp32 (eager DecodeGraph)", "metric": "PSNR (dB) vs the original image",
            "validation": summary, "results": rows}


__all__ = ["METHODS", "QuantizeOptions", "measure_quality", "quantize_bundle"]
