"""Checks and small rewrites of QDQ ONNX graphs (onnx + numpy only).

- `qdq_report` / `check_standard_qdq`: the graph uses standard ops only (every node in the default
  ai.onnx domain, no OpenVINO FakeQuantize or other custom op) and really carries
  QuantizeLinear/DequantizeLinear pairs; and whether every quantizer is what TensorRT's explicit
  quantization accepts (INT8 with zero-point 0).
- `signed_activations`: rewrites unsigned (UINT8, zero-point 0) quantizers, which NNCF emits for
  activations it sees as non-negative, to INT8: TensorRT rejects UINT8 Q/DQ.
- `fold_weight_quantizers`: a torch export writes fp32 weights followed by QuantizeLinear; folding
  the quantization of constant weights into INT8 initializers gives the same graph NNCF's ONNX
  backend writes (a quarter of the weight bytes). Written by hand: onnx's and onnxruntime's
  optimizers either keep the fp32 weights or fold the DequantizeLinear as well.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from edgecodec.errors import EdgecodecError

STANDARD_DOMAINS = ("", "ai.onnx")


def _inits(model) -> dict:
    return {i.name: i for i in model.graph.initializer}


def _constants(model) -> dict:
    """Tensor name -> TensorProto for initializers and Constant nodes (a torch export writes Q/DQ
    scales and zero points as Constant nodes, NNCF's ONNX backend as initializers)."""
    out = _inits(model)
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = a.t
    return out


def qdq_report(model) -> dict:
    """Counts and checks of a (loaded) ONNX model."""
    import onnx
    from onnx import numpy_helper

    inits = _constants(model)
    ops = Counter(n.op_type for n in model.graph.node)
    domains = sorted({n.domain or "ai.onnx" for n in model.graph.node}
                     | {o.domain or "ai.onnx" for o in model.opset_import})
    custom = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in STANDARD_DOMAINS})
    zp_types, nonzero = Counter(), 0
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            if len(n.input) > 2 and n.input[2] in inits:
                zp = inits[n.input[2]]
                zp_types[onnx.TensorProto.DataType.Name(zp.data_type)] += 1
                nonzero += int(np.any(numpy_helper.to_array(zp) != 0))
            else:
                zp_types["UINT8 (default)"] += 1  # no zero point: the type defaults to uint8
    dq_inputs = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    int8_weights = sum(1 for i in model.graph.initializer
                       if i.name in dq_inputs and i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8))
    return {
        "quantize_linear": ops.get("QuantizeLinear", 0),
        "dequantize_linear": ops.get("DequantizeLinear", 0),
        "int8_weight_tensors": int8_weights,
        "domains": domains,
        "custom_ops": custom,
        "standard_ops_only": not custom and set(domains) <= {"ai.onnx"},
        "zero_point_types": dict(zp_types),
        "nonzero_zero_points": nonzero,
        "tensorrt_ready": set(zp_types) <= {"INT8"} and nonzero == 0,
        "opset": max((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), default=0),
    }


def check_standard_qdq(model, need_tensorrt: bool = False) -> dict:
    """Raise unless the graph is standard ONNX with Q/DQ pairs (and, if asked, TensorRT-ready)."""
    rep = qdq_report(model)
    if not rep["standard_ops_only"]:
        raise EdgecodecError(f"quantized graph uses non-standard ops {', '.join(rep['custom_ops']) or rep['domains']}")
    if not rep["quantize_linear"] or not rep["dequantize_linear"]:
        raise EdgecodecError("quantized graph has no QuantizeLinear/DequantizeLinear pairs (nothing was quantized)")
    if need_tensorrt and not rep["tensorrt_ready"]:
        raise EdgecodecError(f"quantized graph is not TensorRT-ready: zero points {rep['zero_point_types']}, "
                             f"{rep['nonzero_zero_points']} non-zero")
    return rep


def signed_activations(model) -> int:
    """In place: UINT8 quantizers with zero-point 0 become INT8 with zero-point 0 and a scale of
    255/127 times theirs (the same range [0, 255*s], half the steps). Returns how many changed."""
    import onnx
    from onnx import numpy_helper

    inits = _constants(model)
    changed = 0
    done: set[str] = set()  # zero points made INT8
    scaled: set[str] = set()  # scales widened (a torch export gives Q and DQ a Constant each)
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 3:
            continue
        zp_name, scale_name = n.input[2], n.input[1]
        if zp_name not in inits or scale_name not in inits:
            continue
        zp = inits[zp_name]
        if zp_name not in done:
            if zp.data_type != onnx.TensorProto.UINT8 or np.any(numpy_helper.to_array(zp) != 0):
                continue
            zero = np.zeros(numpy_helper.to_array(zp).shape, np.int8)
            inits[zp_name].CopyFrom(numpy_helper.from_array(zero, zp_name))
            done.add(zp_name)
            changed += 1
        if scale_name not in scaled:
            scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32) * np.float32(255.0 / 127.0)
            inits[scale_name].CopyFrom(numpy_helper.from_array(scale, scale_name))
            scaled.add(scale_name)
    # shape inference cached the old UINT8 types of those quantizers' tensors (ReLU-fed layers, which
    # NNCF quantizes unsigned) in value_info; the cache is optional, so drop it and let it be re-inferred
    if changed:
        del model.graph.value_info[:]
    return changed


def fold_weight_quantizers(model) -> int:
    """In place: QuantizeLinear of a constant fp32 weight -> INT8/UINT8 initializer. Returns count."""
    from onnx import numpy_helper

    inits = _inits(model)
    # a Constant node's tensor counts as an initializer for this purpose
    const_nodes = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}

    def value(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = const_nodes.get(name)
        if node is not None:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    folded, keep = 0, []
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) >= 2:
            w, scale = value(n.input[0]), value(n.input[1])
            zp = value(n.input[2]) if len(n.input) > 2 else np.zeros((), np.uint8)
            if w is not None and scale is not None and zp is not None and w.dtype == np.float32:
                axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
                if scale.ndim == 1 and scale.size > 1:
                    shape = [1] * w.ndim
                    shape[axis] = -1
                    scale_b, zp_b = scale.reshape(shape), zp.reshape(shape)
                else:
                    scale_b, zp_b = scale, zp
                info = np.iinfo(zp.dtype)
                q = np.clip(np.rint(w / scale_b) + zp_b.astype(np.int32), info.min, info.max).astype(zp.dtype)
                model.graph.initializer.append(numpy_helper.from_array(q, n.output[0]))
                folded += 1
                continue
        keep.append(n)
    if folded:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        _own_weight_parameters(model, value)
        # drop the fp32 weights and quantizer constants nobody reads any more (ONNX Runtime would
        # warn about each one on every load)
        used = Counter(i for n in model.graph.node for i in n.input)
        outputs = {o.name for o in model.graph.output}
        for init in list(model.graph.initializer):
            if used[init.name] == 0 and init.name not in outputs:
                model.graph.initializer.remove(init)
        for node in [n for n in model.graph.node if n.op_type == "Constant" and used[n.output[0]] == 0]:
            model.graph.node.remove(node)
    return folded


def _own_weight_parameters(model, value) -> None:
    """Give the DequantizeLinear of every INT8 weight its own scale and zero-point initializers, as
    NNCF's ONNX backend writes them. The TorchScript export shares one Constant among all equal zero
    points (and scales); OpenVINO's ONNX frontend then keeps a Subtract(zero point) on those weights
    that its CPU plugin does not recognise as symmetric, and runs those convolutions in f32
    (measured: 42 of 124 convolutions of `tiny`)."""
    from onnx import numpy_helper

    inits = {i.name for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        for k, suffix in ((1, "scale"), (2, "zero_point")):
            if k < len(n.input) and n.input[k]:
                v = value(n.input[k])
                if v is None:
                    continue
                name = f"{n.input[0]}.{suffix}"
                if name not in inits:
                    model.graph.initializer.append(numpy_helper.from_array(np.array(v), name))
                    inits.add(name)
                n.input[k] = name


__all__ = ["check_standard_qdq", "fold_weight_quantizers", "qdq_report", "signed_activations"]
