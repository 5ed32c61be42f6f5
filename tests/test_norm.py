"""The export form of GroupNorm: the same numbers as torch's kernel, and a graph without the
channel-splitting reshape that costs OpenVINO its layout reorders."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgecodec.norm import GroupNorm, channelwise_group_norm


@pytest.mark.parametrize("channels, groups, offset", [(16, 8, 0.0), (32, 32, 3.0), (64, 32, 20.0), (6, 3, -5.0)])
def test_matches_torch_group_norm(channels, groups, offset):
    g = torch.Generator().manual_seed(channels)
    x = torch.randn(2, channels, 12, 20, generator=g) * 2.5 + offset
    w, b = torch.randn(channels, generator=g), torch.randn(channels, generator=g)
    ref = F.group_norm(x, groups, w, b, 1e-6)
    assert torch.allclose(channelwise_group_norm(x, groups, w, b, 1e-6), ref, atol=2e-5, rtol=0)
    assert torch.allclose(channelwise_group_norm(x, groups, None, None, 1e-6), F.group_norm(x, groups, eps=1e-6),
                          atol=2e-5, rtol=0)


def test_exported_graph_has_no_channel_split_and_runs():
    import onnx
    import onnxruntime as ort

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), GroupNorm(8, 16), torch.nn.SiLU()).eval()
    x = torch.randn(1, 3, 32, 48)
    buf = io.BytesIO()
    torch.onnx.export(model, (x,), buf, input_names=["x"], opset_version=17, dynamo=False)
    graph = onnx.load_from_string(buf.getvalue()).graph
    ops = {n.op_type for n in graph.node}
    assert "InstanceNormalization" not in ops and "ReduceMean" in ops
    # every Reshape acts on [N, C, 1, 1] statistics, never on the [N, C, H, W] activations
    shapes = {t.name: [d.dim_value for d in t.type.tensor_type.shape.dim]
              for t in onnx.shape_inference.infer_shapes(onnx.load_from_string(buf.getvalue())).graph.value_info}
    for n in graph.node:
        if n.op_type == "Reshape":
            assert np.prod(shapes[n.output[0]]) <= 16, (n.name, shapes[n.output[0]])
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(x).numpy()  # eager: torch's own kernel
    assert np.abs(sess.run(None, {"x": x.numpy()})[0] - ref).max() < 1e-5
