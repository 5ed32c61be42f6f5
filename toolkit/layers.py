"""Building blocks more than one family uses, under the parameter names their checkpoints share (the
taming-transformers / LDM VQGAN lineage that DiffO's autoencoders and OneDC's codec both come from)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int = 32) -> nn.GroupNorm:
    """The VQGAN GroupNorm (eps 1e-6); a layer narrower than `groups` takes one group per channel."""
    return nn.GroupNorm(min(groups, channels), channels, eps=1e-6, affine=True)


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, 1x1-conv projections, residual."""

    def __init__(self, ch: int, groups: int = 32):
        super().__init__()
        self.norm = group_norm(ch, groups)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        q = self.q(y).reshape(b, c, h * w).transpose(1, 2)
        k = self.k(y).reshape(b, c, h * w)
        v = self.v(y).reshape(b, c, h * w)
        attn = torch.softmax(torch.bmm(q, k) * (c ** -0.5), dim=2)
        return x + self.proj_out(torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, h, w))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


__all__ = ["AttnBlock", "Upsample", "group_norm"]
