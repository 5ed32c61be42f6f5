"""GroupNorm that exports in a layout-neutral form.

torch's ONNX exporter writes GroupNorm as Reshape(N, G, -1) -> InstanceNormalization -> Reshape.
That reshape across channels forces OpenVINO's CPU plugin to convert every normalized activation
from its blocked/channels-last layout back to planar and again (measured: 36-43 % of the tiny
decoder's time in `reorder_f32`). Exported, this module instead reduces over H, W per channel and
averages the per-channel statistics over each group on [N, C, 1, 1] tensors only, which every
layout handles; the result is the same group mean and (biased) group variance. Eager torch keeps
the native kernel.
"""

from __future__ import annotations

import torch
from torch import nn


class GroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return super().forward(x)
        return channelwise_group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def channelwise_group_norm(x: torch.Tensor, groups: int, weight: torch.Tensor | None, bias: torch.Tensor | None,
                           eps: float) -> torch.Tensor:
    n, c = x.shape[:2]

    def group_mean(per_channel: torch.Tensor) -> torch.Tensor:  # [N, C, 1, 1] -> group average, same shape
        g = per_channel.reshape(n, groups, c // groups).mean(2, keepdim=True)
        return g.expand(n, groups, c // groups).reshape(n, c, 1, 1)

    mean = group_mean(x.mean((2, 3), keepdim=True))
    # two-pass variance (exact); every channel has H*W elements, so the group variance is the
    # mean of the per-channel ones around the group mean
    var = group_mean((x - mean).pow(2).mean((2, 3), keepdim=True))  # Pow stays fp32 in fp16 exports
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight.reshape(1, c, 1, 1)
    shift = -mean * scale if bias is None else bias.reshape(1, c, 1, 1) - mean * scale
    # one multiply-add over the full tensor, on per-channel [N, C, 1, 1] factors: it fuses with the
    # SiLU (and INT8 quantizer) that follows instead of writing the centred tensor out first
    return x * scale + shift
