"""torch -> ONNX for the decode graph (static shapes: the Swin masks are per-shape constants)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from edgecodec.zoo import CodecModel, DecodeGraph, EncodeGraph
from edgecodec.norm import register_group_norm_export

INPUTS = ("indices", "noise", "rate")
OUTPUTS = ("image",)
OPSET = 17


def example_inputs(codec: CodecModel, height: int, width: int) -> tuple[torch.Tensor, ...]:
    spec = codec.stream_spec()
    h, w = spec.latent_size(height, width)
    return (torch.zeros(1, codec.cfg.num_rates, h, w, dtype=torch.int64),
            torch.zeros(1, codec.cfg.latent_channels, h, w, dtype=torch.float32),
            torch.zeros(1, dtype=torch.int64))


def io_description(codec: CodecModel, height: int, width: int) -> dict:
    ins = example_inputs(codec, height, width)
    dt = {torch.int64: "int64", torch.float32: "float32"}
    return {"inputs": [{"name": n, "dtype": dt[t.dtype], "shape": list(t.shape)} for n, t in zip(INPUTS, ins)],
            "outputs": [{"name": "image", "dtype": "float32", "shape": [1, 3, height, width]}]}


def encoder_io_description(codec: CodecModel, height: int, width: int) -> dict:
    h, w = codec.stream_spec().latent_size(height, width)
    return {"inputs": [{"name": "image", "dtype": "float32", "shape": [1, 3, height, width]}],
            "outputs": [{"name": "indices", "dtype": "int64", "shape": [1, codec.cfg.num_rates, h, w]}]}


def export_onnx(codec: CodecModel, height: int, width: int, path: Path, precision: str = "fp32") -> None:
    import onnx

    onnx.save(trace_onnx(DecodeGraph(codec.cpu().eval()).eval(), codec, height, width, path), str(path))
    if precision == "fp16":
        to_fp16(path)
    onnx.checker.check_model(str(path), full_check=True)


def export_encoder_onnx(codec: CodecModel, height: int, width: int, path: Path) -> None:
    """The encode graph, always FP32: an index that flips is another stream, not a small error."""
    import onnx

    image = torch.zeros(1, 3, height, width)
    model = _trace(EncodeGraph(codec.cpu().eval()).eval(), (image,), ["image"], ["indices"], path)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def stamp(path: Path, fingerprint: str) -> None:
    """Write the model's stream fingerprint into the graph's metadata (runtimes check it on load)."""
    import onnx

    from edgecodec.runtimes.onnxruntime_backend import FINGERPRINT_KEY

    model = onnx.load(str(path))
    del model.metadata_props[:]
    model.metadata_props.add(key=FINGERPRINT_KEY, value=fingerprint)
    onnx.save(model, str(path))


def produce(onnx_path: Path, writer, stem: str, precision: str) -> dict[str, str]:
    """The `onnx` row of runtimes.FORMATS: the exported graph itself, copied into the bundle."""
    import shutil

    target = writer.path(stem + ".onnx")
    shutil.copyfile(onnx_path, target)
    return {"onnx": target.name}


def trace_onnx(graph: torch.nn.Module, codec: CodecModel, height: int, width: int, path: Path):
    """The one way a decode graph (FP32, or NNCF-quantized for QAT) becomes ONNX: TorchScript export
    with GroupNorm's channel-wise form, every shared weight given its own initializer. Written to
    `path` by the exporter and returned loaded, for the caller's last rewrites."""
    return _trace(graph, example_inputs(codec, height, width), list(INPUTS), list(OUTPUTS), path)


def trace_module(module: torch.nn.Module, inputs: tuple, input_names: list[str], output_names: list[str],
                 path: Path):
    """Any module (a family's host-side graph, say) to ONNX the way the decode graph goes; returns it loaded."""
    return _trace(module, inputs, input_names, output_names, path)


def _trace(graph: torch.nn.Module, inputs: tuple, input_names: list[str], output_names: list[str], path: Path):
    import onnx

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation chatter
        register_group_norm_export(OPSET)
        torch.onnx.export(graph, inputs, str(path), input_names=input_names, output_names=output_names,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    model = onnx.load(str(path))
    fold_initializer_identities(model)
    return model


def fold_initializer_identities(model) -> int:
    """Give every `Identity(initializer)` output an initializer of its own and drop the Identity.

    The TorchScript exporter writes such nodes where it de-duplicates equal weights (diffo's
    zero-initialised layers). ONNX Runtime 1.31's graph optimizer removes the initializer behind
    some of them and then rejects the model ("... is not a graph input, initializer, or output of
    a previous node"), and NNCF looks weights up by the consumer's input name; with one weight per
    layer both work, as they do for a trained checkpoint, whose weights all differ."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    kept, folded = [], 0
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]),
                                                             node.output[0]))
            inits[node.output[0]] = graph.initializer[-1]
            folded += 1
        else:
            kept.append(node)
    if folded:
        del graph.node[:]
        graph.node.extend(kept)
    return folded


def to_fp16(path: Path) -> None:
    """fp16 weights and compute, with fp32 graph inputs/outputs. Resize keeps fp32 (its scales
    would become an invalid fp16 tensor) and so do softmax and norms, which overflow in fp16."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(path))
    model = convert_float_to_float16(model, keep_io_types=True,
                                     op_block_list=["Resize", "Softmax", "GroupNormalization",
                                                    "InstanceNormalization", "ReduceMean", "Pow", "Sqrt",
                                                    "Range", "Gather"])
    onnx.save(model, str(path))


def onnx_ops(path: Path) -> set[str]:
    import onnx

    return {(n.domain or "ai.onnx") + "::" + n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


__all__ = ["export_encoder_onnx", "export_onnx", "trace_onnx", "example_inputs", "io_description", "onnx_ops", "INPUTS", "OUTPUTS"]
