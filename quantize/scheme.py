"""The INT8 scheme for the decode graph, in one place: what is quantized, what stays float and why,
the preset per target, the overflow fix, and how activation ranges are estimated.

PTQ (ptq.py), accuracy-controlled PTQ (accuracy.py) and QAT (qat.py) all build their NNCF arguments
here, from the graph they quantize (an ONNX ModelProto or the torch DecodeGraph), so the three
methods keep the same layers in float.

Measured on `tiny` before it was trained (seeded random weights, 64x128, the two sample photos at every rate, 4
calibration and 4 other validation streams; PSNR of the INT8 output against the FP32 output through
ONNX Runtime, mean / worst item):

    NNCF defaults (PERFORMANCE, every quantizable op, mean-of-minmax ranges)    24.8 / 23.6 dB
    only weighted ops (Conv, Linear/MatMul with a weight) quantized             28.9 / 25.5 dB
    + attention score matmuls, FiLM Gemms and the final conv in float           29.0 / 25.4 dB
    + overflow fix DISABLE (this CPU has VNNI) instead of FIRST_LAYER           29.2 / 25.9 dB
    + ranges from the global min/max of the calibration set (MINMAX)           29.7 / 28.1 dB
    MIXED preset (asymmetric activations) instead, for the OpenVINO IR         32.9 / 28.3 dB

Per-layer sensitivity (removing one layer's quantizers at a time) showed no single layer worth more
than 0.5 dB: with random weights the error is spread over all ~140 quantized layers, so the choices
below are structural (what INT8 buys speed on, what it cannot represent), not a per-layer hunt.
Accuracy-controlled PTQ (accuracy.py) is the per-layer answer for a trained model. Also tried and
rejected: histogram and quantile range estimators (-2 and -4 dB), widening the ranges (-0.5 dB:
the error is resolution, not clipping), NNCF's full bias correction (writes an invalid graph here).
With random weights the INT8-vs-FP32 PSNR falls with image size (about 27 dB mean at 128x192).
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

# --- what gets quantized --------------------------------------------------------------------
# Only operations that carry a weight: convolutions and linear layers (ONNX Conv, Gemm, and MatMul
# with a constant operand; torch conv2d and linear). They are where INT8 kernels make a decoder
# faster (oneDNN in OpenVINO, TensorRT's int8 convolutions), and NNCF's default of also putting
# quantizers on element-wise adds and multiplies, norm outputs, the codebook gather and the noise
# input cost 4 dB here without giving any of those kernels more work to do.
QUANTIZED_TYPES = {"onnx": frozenset({"Conv", "MatMul", "Gemm"}), "torch": frozenset({"conv2d", "linear"})}

# --- what stays float, and why --------------------------------------------------------------
FLOAT_ROLES = {
    "attention_scores": "q·kᵀ and softmax·v of the Swin window attention and of the autoencoders' "
                        "attention: both operands are activations (no weight), the logits carry the "
                        "-100 shifted-window mask and the softmax output is peaked in [0, 1]; "
                        "per-tensor INT8 would flatten the attention pattern",
    "final_conv": "the last convolution, which writes the image: its output is the decoded picture "
                  "itself, with no later layer to absorb an 8-bit step",
    "normalization": "GroupNorm (exported as per-channel ReduceMean statistics and one multiply-add, "
                     "toolkit/norm.py): mean/variance reductions "
                     "need float; NNCF's ONNX/OpenVINO backends keep them float and the torch backend is "
                     "told to",
    "softmax": "softmax: exponentials of the attention logits",
    "host_side_inputs": "codebook lookup (Gather of the codebooks by the stream's indices), the rate "
                        "tables and the noise injection x_t = (z + sigma*noise)*scale: they carry the "
                        "stream's information exactly, and are cheap",
    "elementwise": "residual adds, FiLM multiply-add, SiLU/GELU, resize, concat and reshapes: no INT8 "
                   "kernel to gain, and quantizing them cost 4 dB (see the table above)",
}

# A model family adds roles of its own (CodecModel.float_layers: role -> (regex, why)), e.g. DiffO's
# FiLM conditioning layers. Such layers are recognised by the module path of their weight (torch
# parameter or ONNX initializer name) or, where the exporter dropped the name (transposed Linear
# weights), by the node's scope name.

NORM_TYPES = frozenset({"ReduceMean", "InstanceNormalization", "GroupNormalization", "LayerNormalization",
                        "BatchNormalization", "group_norm", "layer_norm", "batch_norm"})
SOFTMAX_TYPES = frozenset({"Softmax", "softmax"})
HOST_TYPES = frozenset({"Gather", "embedding", "nncf_model_input"})
# data movement and shape arithmetic: no arithmetic on values, nothing to keep "in float"
LAYOUT_TYPES = frozenset({"Constant", "Identity", "Shape", "Reshape", "Transpose", "Slice", "Unsqueeze", "Squeeze",
                          "Flatten", "Cast", "Range", "Expand", "ConstantOfShape", "reshape", "permute", "view",
                          "transpose", "unsqueeze", "squeeze", "flatten", "__getitem__", "chunk", "to", "roll",
                          "dropout", "contiguous", "split"})

# --- presets --------------------------------------------------------------------------------
# ONNX is what TensorRT (and ONNX Runtime) consume: TensorRT's explicit quantization wants signed
# INT8 Q/DQ with zero-point 0, i.e. NNCF's PERFORMANCE preset (symmetric weights and activations);
# qdq.check_standard_qdq(need_tensorrt=True) verifies the result. The OpenVINO IR takes MIXED (symmetric weights,
# asymmetric activations): OpenVINO's CPU and GPU plugins run u8 activations with a zero point
# natively, and the inputs of nearly every convolution here come out of SiLU (min about -0.28,
# max several units), where a symmetric range wastes almost half of the codes (+3.1 dB measured).
# QAT trains one model whose export feeds both, so it takes the TensorRT-safe PERFORMANCE.
PRESETS = {"onnx": "performance", "openvino": "mixed", "torch": "performance"}

# Activation ranges: global min and max over the calibration set (NNCF's MINMAX), not the default
# mean of per-sample minima/maxima. One graph serves every rate, and the rate changes the noise level
# and scale of the latent: averaging per-sample ranges clips the rates with the widest activations
# (worst item 25.9 -> 28.1 dB measured). Weights keep NNCF's per-channel min/max.
ACTIVATION_RANGES = "MINMAX"

# --- overflow fix ---------------------------------------------------------------------------
# x86 CPUs without VNNI multiply u8 x s8 with pmaddubsw, which saturates the 16-bit sum of two
# products; OpenVINO and ONNX Runtime (U8S8 kernels) both use it. NNCF's fix quantizes weights to
# 7 bits so the sum cannot overflow: ENABLE does it for every Conv/MatMul (toolchain.md: mean error
# 0.040 -> 0.008 on a CPU without VNNI); NNCF's default FIRST_LAYER only covers the first layer,
# too little for this decoder. VNNI (vpdpbusd) and AMX accumulate in 32 bits, so they get the full
# 8 bits (DISABLE). GPUs (TensorRT, Intel GPU) and ARM (sdot/udot) have no such path either.
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")
OVERFLOW_CHOICES = ("auto", "enable", "disable", "first_layer")


def cpu_int8_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The quantizing machine's CPU: architecture and the VNNI/AMX flags found in /proc/cpuinfo."""
    arch = platform.machine().lower()
    flags: set[str] = set()
    source = None
    try:
        text = Path(cpuinfo).read_text(errors="replace")
        source = str(cpuinfo)
        for line in text.splitlines():
            if line.lower().startswith(("flags", "features")):
                flags.update(line.split(":", 1)[-1].split())
    except OSError:
        pass
    x86 = arch in ("x86_64", "amd64", "i386", "i686") or "sse2" in flags
    return {"arch": arch, "x86": x86, "vnni_flags": sorted(f for f in VNNI_FLAGS if f in flags),
            "cpuinfo": source}


def choose_overflow_fix(request: str = "auto", cpu: dict | None = None) -> tuple[str, str]:
    """(NNCF OverflowFix value, why). `request` is auto, enable, disable or first_layer."""
    if request not in OVERFLOW_CHOICES:
        from edgecodec.errors import EdgecodecError

        raise EdgecodecError(f"unknown overflow fix {request!r}: choose from {', '.join(OVERFLOW_CHOICES)}")
    if request != "auto":
        value = {"enable": "enable", "disable": "disable", "first_layer": "first_layer_only"}[request]
        return value, f"asked for ({request})"
    cpu = cpu_int8_features() if cpu is None else cpu
    if cpu["cpuinfo"] is None:
        return "enable", "CPU flags unreadable (no /proc/cpuinfo): 7-bit weights are safe everywhere"
    if not cpu["x86"]:
        return "disable", f"{cpu['arch']} CPU: no u8 x s8 pmaddubsw saturation path, full 8-bit weights"
    if cpu["vnni_flags"]:
        return "disable", (f"x86 CPU with {', '.join(cpu['vnni_flags'])}: int8 dot products accumulate "
                           f"in 32 bits, full 8-bit weights")
    return "enable", ("x86 CPU without VNNI/AMX: pmaddubsw saturates u8 x s8 pair sums, so every "
                      "Conv/MatMul weight uses 7 bits")


# --- classifying a graph ----------------------------------------------------------------------

@dataclass
class GraphOp:
    name: str
    type: str
    weight: str | None  # module path of the weight, or None (activation x activation)
    role: str  # "int8", a FLOAT_ROLES key, or "layout" (data movement, no arithmetic)


def _role(op_type: str, weight: str | None, name: str, kind: str, is_last: bool,
          float_layers: dict | None = None) -> str:
    if op_type in QUANTIZED_TYPES[kind]:
        if weight is None:
            return "attention_scores"
        for role, (pattern, _) in (float_layers or {}).items():
            if re.search(pattern, weight) or re.search(pattern, name):
                return role
        if is_last:
            return "final_conv"
        return "int8"
    if op_type in ("matmul", "bmm", "__matmul__"):
        return "attention_scores"
    if op_type in NORM_TYPES:
        return "normalization"
    if op_type in SOFTMAX_TYPES:
        return "softmax"
    if op_type in HOST_TYPES:
        return "host_side_inputs"
    if op_type in LAYOUT_TYPES:
        return "layout"
    return "elementwise"


def classify_onnx(model, float_layers: dict | None = None) -> list[GraphOp]:
    """Every node of an FP32 ONNX decode graph with its role. ONNX nodes are topologically sorted,
    so the last weighted node is the final convolution."""
    graph = model.graph
    consts = {i.name: i.name for i in graph.initializer}  # tensor -> initializer it comes from
    for node in graph.node:  # constants through Identity/Transpose/... are still constants
        if node.op_type == "Constant":
            for o in node.output:
                consts[o] = o
        elif node.input and node.op_type in ("Identity", "Transpose", "Reshape", "Cast", "Unsqueeze") \
                and node.input[0] in consts and all(i in consts or not i for i in node.input):
            for o in node.output:
                consts[o] = consts[node.input[0]]
    heavy = [n for n in graph.node if n.op_type in QUANTIZED_TYPES["onnx"]]
    last = heavy[-1].name if heavy else None
    ops = []
    for node in graph.node:
        weight = None
        if node.op_type in QUANTIZED_TYPES["onnx"]:
            for i in (node.input[1:2] if node.op_type != "MatMul" else node.input[:2]):
                if i in consts:
                    src = consts[i]
                    # transposed Linear weights lose their name (onnx::MatMul_123): use the scope
                    weight = src if not src.startswith("onnx::") else node.name.strip("/").replace("/", ".")
        ops.append(GraphOp(node.name, node.op_type, weight,
                           _role(node.op_type, weight, node.name, "onnx", node.name == last, float_layers)))
    return ops


def classify_torch(model, example: tuple, float_layers: dict | None = None) -> list[GraphOp]:
    """Every operation NNCF's torch backend sees in `model` (traced on `example`) with its role."""
    import copy

    from nncf.torch.function_hook import wrap_model
    from nncf.torch.function_hook.nncf_graph.nncf_graph_builder import build_nncf_graph

    graph = build_nncf_graph(wrap_model(copy.deepcopy(model)), example)
    order = graph.topological_sort()
    heavy = [n for n in order if n.node_type in QUANTIZED_TYPES["torch"]]
    last = heavy[-1].node_name if heavy else None
    ops = []
    for node in order:
        if node.node_type in ("nncf_model_const", "nncf_model_output"):
            continue
        weight = None
        if node.node_type in QUANTIZED_TYPES["torch"]:
            for edge in graph.get_input_edges(node):
                src = edge.from_node
                if src.node_type == "nncf_model_const" and src.node_name.endswith("weight"):
                    weight = src.node_name
        ops.append(GraphOp(node.node_name, node.node_type, weight,
                           _role(node.node_type, weight, node.node_name, "torch", node.node_name == last,
                                 float_layers)))
    return ops


# --- the NNCF arguments -------------------------------------------------------------------------

@dataclass
class Scheme:
    target: str  # onnx, openvino (quantized through ONNX, converted to IR) or torch (QAT)
    kind: str  # graph flavour: onnx or torch
    ops: list[GraphOp]
    overflow_fix: str
    overflow_reason: str
    cpu: dict = field(default_factory=dict)
    model_roles: dict = field(default_factory=dict)  # the family's own float roles: role -> why

    @property
    def preset(self) -> str:
        return PRESETS[self.target]

    @property
    def float_weighted(self) -> list[GraphOp]:
        return [o for o in self.ops if o.type in QUANTIZED_TYPES[self.kind] and o.role != "int8"]

    @property
    def quantized(self) -> list[GraphOp]:
        return [o for o in self.ops if o.role == "int8"]

    def ignored_scope(self):
        """Every type but the weighted ones, plus the weighted nodes that stay float, by name."""
        import nncf

        types = sorted({o.type for o in self.ops} - QUANTIZED_TYPES[self.kind])
        return nncf.IgnoredScope(names=sorted(o.name for o in self.float_weighted), types=types, validate=False)

    def nncf_preset(self):
        from nncf import QuantizationPreset

        return QuantizationPreset(self.preset)

    def advanced_parameters(self):
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        return AdvancedQuantizationParameters(
            overflow_fix=OverflowFix(self.overflow_fix),
            activations_range_estimator_params=getattr(RangeEstimatorParametersSet, ACTIVATION_RANGES))

    def nncf_kwargs(self) -> dict:
        return {"preset": self.nncf_preset(), "ignored_scope": self.ignored_scope(), "model_type": None}

    def describe(self) -> dict:
        """What the manifest records: preset, overflow fix, ranges, and what stayed in float."""
        float_part = {}
        for role, why in {**FLOAT_ROLES, **self.model_roles}.items():
            mine = [o for o in self.ops if o.role == role]
            if mine:
                entry = {"why": why, "count": len(mine)}
                if role in ("attention_scores", "final_conv") or role in self.model_roles:
                    entry["layers"] = [o.weight or o.name for o in mine]
                else:
                    entry["types"] = sorted({o.type for o in mine})
                float_part[role] = entry
        quantized = self.quantized
        return {
            "preset": self.preset,
            "symmetric_activations": self.preset == "performance",
            "weights": "int8 symmetric per output channel",
            "activations": "int8 per tensor, " + ("symmetric signed, zero-point 0" if self.preset == "performance"
                                                    else "asymmetric (u8 with zero point)"),
            "activation_ranges": f"{ACTIVATION_RANGES} (global min/max over the calibration set)",
            "overflow_fix": self.overflow_fix,
            "overflow_fix_reason": self.overflow_reason,
            "cpu": self.cpu,
            "quantized_ops": len(quantized),
            "quantized_types": sorted({o.type for o in quantized}),
            "float": float_part,
        }


def build_scheme(ops: list[GraphOp], target: str, kind: str, overflow: str = "auto",
                 float_layers: dict | None = None) -> Scheme:
    cpu = cpu_int8_features()
    value, reason = choose_overflow_fix(overflow, cpu)
    return Scheme(target, kind, ops, value, reason, cpu, {r: why for r, (_, why) in (float_layers or {}).items()})


def scheme_section(schemes: dict) -> dict:
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


__all__ = [
    "FLOAT_ROLES",
    "PRESETS",
    "GraphOp",
    "Scheme",
    "build_scheme",
    "scheme_section",
    "choose_overflow_fix",
    "classify_onnx",
    "classify_torch",
    "cpu_int8_features",
]


class quiet_nncf:
    """NNCF logs every ignored node at INFO on its own stream handlers (thousands of lines for this
    graph): raise those handlers to WARNING for the duration, leaving the logger (and any handler a
    caller adds to it, like accuracy.py's) at INFO."""

    def __enter__(self):
        import logging

        import nncf  # noqa: F401  (its import installs the handlers)

        self._saved = [(h, h.level) for h in logging.getLogger("nncf").handlers]
        for h, _ in self._saved:
            h.setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        for h, level in self._saved:
            h.setLevel(level)
