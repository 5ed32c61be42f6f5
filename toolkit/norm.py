"""GroupNorm's two non-eager forms: for ONNX export, and for torch.compile on CPUs.

ONNX: per-channel statistics and one multiply-add, in a layout-neutral graph.

torch's exporter writes GroupNorm as Reshape(N, G, -1) -> InstanceNormalization -> Reshape. That
reshape across channels forces OpenVINO's CPU plugin to convert every normalized activation from
its blocked/channels-last layout back to planar and again (measured: 36-43 % of the tiny decoder's
time in `reorder_f32`). `register_group_norm_export()` replaces the exporter's translation of
aten::group_norm: reduce over H, W per channel, average those statistics over each group on
[N, C, 1, 1] tensors only (which every layout handles), then `x * scale + shift`. Same group mean
and biased variance, same numbers.

It is an export rule, not a module: eager torch keeps its native kernel and every model keeps
plain nn.GroupNorm, so NNCF's hooks on `group_norm` (QAT's activation quantizers) fire unchanged
while the graph is traced for export.

torch.compile on CPUs: inductor decomposes GroupNorm and fuses it with the SiLU after it, but its
C++ Welford reduction over `tiny`'s full-resolution 16-channel maps (two channels per group)
vectorises poorly: 17-30 ms a kernel, the compiled decoder no faster than eager. `opaque_group_norms`
turns every GroupNorm of a copy of a module into a custom op that inductor calls as an extern kernel
(eager's native one, as it does for convolutions) and fuses only what follows it. Same numbers.
"""

from __future__ import annotations

import functools


def _group_norm(g, x, num_groups, weight, bias, eps, cudnn_enabled):
    import torch
    from torch.onnx import symbolic_helper as sh

    groups = sh._get_const(num_groups, "i", "num_groups")
    eps = sh._get_const(eps, "f", "eps")
    channels = sh._get_tensor_dim_size(x, 1)
    if channels is None:
        raise RuntimeError("GroupNorm export needs a static channel count")

    def const(value, dtype=torch.int64):
        return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))

    def group_mean(per_channel):  # [N, C, 1, 1] -> the mean of its group, same shape
        grouped = g.op("Reshape", per_channel, const([0, groups, -1]))
        mean = g.op("ReduceMean", grouped, axes_i=[2], keepdims_i=1)
        return g.op("Reshape", g.op("Expand", mean, g.op("Shape", grouped)), const([-1, channels, 1, 1]))

    mean = group_mean(g.op("ReduceMean", x, axes_i=[2, 3], keepdims_i=1))
    # two-pass variance (exact); every channel has H*W elements, so the group variance is the mean
    # of the per-channel ones around the group mean. Pow stays fp32 in fp16 exports.
    deviation = g.op("Pow", g.op("Sub", x, mean), const(2.0, torch.float32))
    var = group_mean(g.op("ReduceMean", deviation, axes_i=[2, 3], keepdims_i=1))
    scale = g.op("Reciprocal", g.op("Sqrt", g.op("Add", var, const(eps, torch.float32))))
    if not sh._is_none(weight):
        scale = g.op("Mul", scale, g.op("Reshape", weight, const([1, channels, 1, 1])))
    shift = g.op("Neg", g.op("Mul", mean, scale))
    if not sh._is_none(bias):
        shift = g.op("Add", g.op("Reshape", bias, const([1, channels, 1, 1])), shift)
    # one multiply-add over the full tensor, on per-channel factors: it fuses with the SiLU (and
    # INT8 quantizer) that follows instead of writing the centred tensor out first
    return g.op("Add", g.op("Mul", x, scale), shift)


def register_group_norm_export(opset: int) -> None:
    """Make torch.onnx.export (TorchScript, `opset` 13-17: ReduceMean takes axes as an attribute)
    write GroupNorm in the channel-wise form; idempotent."""
    import torch

    torch.onnx.register_custom_op_symbolic("aten::group_norm", _group_norm, opset)


def opaque_group_norms(module):
    """A copy of `module` whose GroupNorms call eager's kernel through a custom op that
    torch.compile does not decompose (CPU decoding; CUDA's Triton GroupNorm is fine as it is)."""
    import copy

    from torch import nn

    module = copy.deepcopy(module)
    for m in module.modules():
        if type(m) is nn.GroupNorm and m.affine:
            m.__class__ = _opaque_group_norm()
    return module


@functools.cache  # the op registers once per process, on first use: importing this module needs no torch
def _opaque_group_norm():
    import torch
    import torch.nn.functional as F

    # the schema is spelled out: this module's annotations are strings (__future__)
    @torch.library.custom_op("edgecodec::group_norm", mutates_args=(),
                             schema="(Tensor x, int groups, Tensor weight, Tensor bias, float eps) -> Tensor")
    def group_norm(x, groups, weight, bias, eps):
        return F.group_norm(x, groups, weight, bias, eps)

    @group_norm.register_fake
    def _(x, groups, weight, bias, eps):
        return torch.empty_like(x)

    class OpaqueGroupNorm(torch.nn.GroupNorm):
        def forward(self, x):
            return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    return OpaqueGroupNorm


__all__ = ["opaque_group_norms", "register_group_norm_export"]
