"""Post-training INT8 quantization of the exported decode graph with NNCF's ONNX backend.

Route (toolchain.md lists three that give standard graphs): export the FP32 decode graph to ONNX
exactly as `edgecodec export` does, then `nncf.quantize` the ONNX ModelProto. The result holds only
standard QuantizeLinear/DequantizeLinear pairs (INT8 weights as initializers + DequantizeLinear),
which ONNX Runtime and TensorRT read, and which `ov.convert_model` turns into an OpenVINO INT8 IR
(FakeQuantize on activations, i8 weight constants; the CPU plugin runs those convolutions in i8/u8).

The ONNX graph and the OpenVINO IR are quantized separately from the same FP32 graph and the same
calibration items, with the same ignored scope, but different presets (scheme.py: symmetric for
TensorRT, asymmetric activations for OpenVINO).
"""

from __future__ import annotations

import time
from pathlib import Path

from .calibration import CalibItem
from .scheme import Scheme, build_scheme, classify_onnx


def export_fp32_onnx(codec, height: int, width: int, path: Path) -> None:
    """The FP32 decode graph, exactly as `edgecodec export` writes it."""
    from edgecodec.export.onnx_export import export_onnx

    export_onnx(codec, height, width, Path(path), "fp32")


def prepare_fp32(model) -> dict:
    """In place, same computation: Constant nodes become initializers (NNCF's pattern matching runs
    ~20% faster on fewer nodes, and a constant operand reads as a weight). Shared weights already
    have one initializer per layer (onnx_export.trace_onnx), so a layer's quantizer can be reverted
    on its own."""
    from onnx import numpy_helper

    graph = model.graph
    keep, constants = [], 0
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t),
                                                             node.output[0]))
            constants += 1
            continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    return {"constants_to_initializers": constants}


def onnx_scheme(model, target: str, overflow: str = "auto", float_layers: dict | None = None) -> Scheme:
    return build_scheme(classify_onnx(model, float_layers), target, "onnx", overflow, float_layers)


def nncf_dataset(items: list[CalibItem]):
    import nncf

    return nncf.Dataset(items, lambda item: item.feeds())


def graph_method(model, sets, target: str, overflow: str, float_layers: dict):
    """The `ptq` row of methods.METHODS."""
    return quantize_onnx(model, sets.calibration, target, overflow, float_layers)


def quantize_onnx(model, items: list[CalibItem], target: str, overflow: str = "auto",
                  float_layers: dict | None = None):
    """FP32 ModelProto -> (INT8 QDQ ModelProto, Scheme, log). `target` is onnx or openvino; `float_layers`
    the model family's own float roles (CodecModel.float_layers)."""
    import nncf

    scheme = onnx_scheme(model, target, overflow, float_layers)
    t0 = time.perf_counter()
    quantized = nncf.quantize(model, nncf_dataset(items), subset_size=len(items), fast_bias_correction=True,
                              advanced_parameters=scheme.advanced_parameters(), **scheme.nncf_kwargs())
    quantized = finish_onnx(quantized, target)
    log = {"algorithm": "nncf.quantize (ONNX backend): MinMax statistics, fast bias correction",
           "seconds": round(time.perf_counter() - t0, 2), "subset_size": len(items)}
    return quantized, scheme, log


def finish_onnx(model, target: str):
    """The TensorRT-facing graph must be signed INT8 throughout (qdq.signed_activations)."""
    from .qdq import signed_activations

    if target == "onnx":
        signed_activations(model)
    return model


def quantized_nodes(model) -> set[str]:
    """Names of Conv/MatMul/Gemm nodes that read at least one DequantizeLinear output."""
    producers = {o: n for n in model.graph.node for o in n.output}
    out = set()
    for n in model.graph.node:
        if n.op_type in ("Conv", "MatMul", "Gemm") and any(
                i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input):
            out.add(n.name)
    return out


def save_onnx(model, path: Path) -> None:
    import onnx

    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def ort_cpu_kernels(onnx_path: Path, scratch: Path) -> dict:
    """What ONNX Runtime's CPU provider makes of the Q/DQ graph: how many convolutions/matmuls it
    fuses into integer kernels (QLinearConv, QLinearMatMul, ...) and how many stay float behind a
    DequantizeLinear. It fuses only DQ -> op -> Q; this scheme leaves conv outputs float (the
    residual adds and norms after them stay float), so on ORT-CPU the graph mostly runs as
    dequantize + float conv: the graph is shaped for TensorRT, and the OpenVINO IR is the CPU one."""
    from collections import Counter

    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # no NCHWc layout
    opts.optimized_model_filepath = str(scratch)
    ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(str(scratch)).graph.node)
    integer = {k: v for k, v in ops.items() if k.startswith("QLinear") or k.endswith("Integer")}
    float_ops = sum(v for k, v in ops.items() if k in ("Conv", "FusedConv", "MatMul", "FusedMatMul", "Gemm"))
    return {"integer_kernels": integer, "float_conv_matmul": float_ops}


def to_openvino(onnx_path: Path, xml_path: Path) -> dict:
    """QDQ ONNX -> OpenVINO IR. Q/DQ pairs become FakeQuantize, INT8 weights stay i8 constants;
    fp32 elsewhere (compress_to_fp16=False: the int8 bundle computes the float parts in f32)."""
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return ir_report(model)


def ir_report(model) -> dict:
    from collections import Counter

    types = Counter(op.get_type_name() for op in model.get_ops())
    consts = Counter(str(op.get_output_element_type(0)) for op in model.get_ops() if op.get_type_name() == "Constant")
    return {"fake_quantize": types.get("FakeQuantize", 0), "convolutions": types.get("Convolution", 0),
            "int8_constants": sum(v for k, v in consts.items() if "int8" in k or "uint8" in k or "u8" in k or "i8" in k)}


def runtime_precisions(xml_path: Path) -> dict:
    """What OpenVINO's CPU plugin really runs the convolutions and matmuls in (i8/u8/f32)."""
    from collections import Counter

    import openvino as ov

    compiled = ov.Core().compile_model(str(xml_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    counts: Counter = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else ""
        if layer in ("Convolution", "MatMul", "FullyConnected"):
            counts[f"{layer}:{info['runtimePrecision'].astype(str) if 'runtimePrecision' in info else '?'}"] += 1
    return dict(sorted(counts.items()))


__all__ = [
    "export_fp32_onnx",
    "nncf_dataset",
    "onnx_scheme",
    "ort_cpu_kernels",
    "prepare_fp32",
    "graph_method",
    "quantize_onnx",
    "quantized_nodes",
    "runtime_precisions",
    "save_onnx",
    "to_openvino",
]
