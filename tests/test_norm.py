"""GroupNorm's export form (edgecodec.norm): the same numbers as torch's kernel, a graph without the
channel-splitting reshape that costs OpenVINO its layout reorders, and NNCF's hooks on group_norm
still in the exported graph. Its compile form: a copy whose GroupNorms are one opaque op, same numbers
(tests/test_gpu_logic.py compiles a whole decoder with it)."""

import io
import warnings

import numpy as np
import pytest
import torch

from edgecodec.export.onnx_export import OPSET
from edgecodec.norm import opaque_group_norms, register_group_norm_export


def _export(model, x) -> bytes:
    register_group_norm_export(OPSET)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation and tracer chatter
        torch.onnx.export(model, (x,), buf, input_names=["x"], opset_version=OPSET, dynamo=False)
    return buf.getvalue()


@pytest.mark.parametrize("channels, groups, offset, affine", [(16, 8, 0.0, True), (32, 32, 3.0, True),
                                                              (64, 32, 20.0, True), (6, 3, -5.0, False)])
def test_exported_group_norm_matches_torch(channels, groups, offset, affine):
    import onnxruntime as ort

    torch.manual_seed(channels)
    norm = torch.nn.GroupNorm(groups, channels, eps=1e-6, affine=affine).eval()
    if affine:
        with torch.no_grad():
            norm.weight.normal_()
            norm.bias.normal_()
    x = torch.randn(2, channels, 12, 20) * 2.5 + offset
    sess = ort.InferenceSession(_export(norm, x), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = norm(x).numpy()  # eager: torch's own kernel
    assert np.abs(sess.run(None, {"x": x.numpy()})[0] - ref).max() < 2e-5


def test_exported_graph_has_no_channel_split():
    import onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.GroupNorm(8, 16),
                                torch.nn.SiLU()).eval()
    data = _export(model, torch.randn(1, 3, 32, 48))
    graph = onnx.load_from_string(data).graph
    ops = {n.op_type for n in graph.node}
    assert "InstanceNormalization" not in ops and "ReduceMean" in ops
    # every Reshape acts on [N, C, 1, 1] statistics, never on the [N, C, H, W] activations
    shapes = {t.name: [d.dim_value for d in t.type.tensor_type.shape.dim]
              for t in onnx.shape_inference.infer_shapes(onnx.load_from_string(data)).graph.value_info}
    for n in graph.node:
        if n.op_type == "Reshape":
            assert np.prod(shapes[n.output[0]]) <= 16, (n.name, shapes[n.output[0]])


def test_quantizer_on_a_group_norm_output_survives_export():
    """NNCF hooks its activation quantizers onto the ops torch runs; a conv fed straight by GroupNorm
    (attention q/k/v, Swin MLP) has its input quantizer on group_norm's output. The export rule
    keeps that op, so the exported graph has the Q/DQ pair the QAT model was trained with."""
    import nncf
    import onnx
    from nncf.torch.quantization.layers import BaseQuantizer, QuantizerExportMode

    class NormConv(torch.nn.Module):  # not a root Sequential, which NNCF's hook storage cannot wrap
        def __init__(self):
            super().__init__()
            self.norm, self.conv = torch.nn.GroupNorm(4, 8), torch.nn.Conv2d(8, 8, 1)

        def forward(self, x):
            return self.conv(self.norm(x))

    torch.manual_seed(0)
    model = NormConv().eval()
    x = torch.randn(1, 8, 16, 16)
    q = nncf.quantize(model, nncf.Dataset([x]), subset_size=1)
    for m in q.modules():
        if isinstance(m, BaseQuantizer):
            m.set_export_mode(QuantizerExportMode.ONNX_QUANTIZE_DEQUANTIZE_PAIRS)
    with torch.no_grad():
        graph = onnx.load_from_string(_export(q, x)).graph
    producer = {o: n for n in graph.node for o in n.output}
    conv = next(n for n in graph.node if n.op_type == "Conv")
    assert producer[conv.input[0]].op_type == "DequantizeLinear"
    assert "InstanceNormalization" not in {n.op_type for n in graph.node}


def test_opaque_group_norms_is_a_copy_with_the_same_numbers():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.GroupNorm(8, 16, eps=1e-6),
                                torch.nn.SiLU(), torch.nn.GroupNorm(4, 16, affine=False)).eval()
    opaque = opaque_group_norms(model)
    assert type(model[1]) is torch.nn.GroupNorm  # the original is untouched
    assert type(opaque[1]).__name__ == "OpaqueGroupNorm" and type(opaque[3]) is torch.nn.GroupNorm  # no weights
    x = torch.randn(1, 3, 24, 40) * 3 + 1
    with torch.no_grad():
        assert torch.equal(opaque(x), model(x))
        assert torch.equal(opaque_group_norms(model)(x), model(x))  # the op registers once per process
