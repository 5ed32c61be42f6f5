"""Swin transformer layer as ResShift's UNetModelSwin uses it (channels-first, GroupNorm).

The shifted-window mask reproduces the reference exactly, quirks included: the reference builds it
on a (1, 1, H, W) tensor indexed as if it were (1, H, W, 1), so regions are separated along H only,
and it flattens each window column-major. Trained weights rely on that, so we keep it — but we
compute it from the static feature-map shape, so the export and torch.compile both fold it to a
constant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)  # ResShift's GroupNorm32, eps 1e-5


def shifted_window_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """(num_windows, window², window²) additive mask, 0 or -100, exactly as the reference computes it.
    Torch ops on static sizes: constant-folded by the ONNX export and by torch.compile alike."""
    # The reference's h-slices hit a size-1 axis: only the last one is non-empty, so its 3x3 loop
    # labels just three H bands: [0, H-ws), [H-ws, H-shift), [H-shift, H).
    rows = torch.arange(height)
    band = (rows >= height - window).to(torch.int64) + (rows >= height - shift).to(torch.int64)
    region = band[:, None].expand(height, width)
    win = region.reshape(height // window, window, width // window, window)
    # windows in row-major order; tokens inside a window flattened column-major (the permute quirk)
    win = win.permute(0, 2, 3, 1).reshape(-1, window * window)
    differ = win[:, None, :] != win[:, :, None]
    return torch.where(differ, torch.tensor(-100.0), torch.tensor(0.0))


def relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij"))
    flat = coords.flatten(1)
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += window - 1
    rel[:, :, 1] += window - 1
    rel[:, :, 0] *= 2 * window - 1
    return rel.sum(-1)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.window, self.heads = window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.reshape(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.reshape(bw // nw, nw, self.heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape(-1, self.heads, n, n)
        out = (torch.softmax(attn, dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float, groups: int):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = group_norm(dim, groups)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = group_norm(dim, groups)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, s = self.window, self.shift
        y = self.norm1(x)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(2, 3))
        # partition into windows: (b * nW, ws*ws, c), tokens row-major inside each window
        win = y.reshape(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, ws * ws, c)
        mask = None
        if s:
            mask = shifted_window_mask(h, w, ws, s).to(x.device, x.dtype)
        win = self.attn(win, mask)
        y = win.reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(2, 3))
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchProj(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class SwinLayer(nn.Module):
    """ResShift's BasicLayer with patch size 1: 1x1 embed, `depth` blocks (odd ones shifted), 1x1 unembed."""

    def __init__(self, channels: int, embed: int, heads: int, window: int, depth: int,
                 mlp_ratio: float, groups: int):
        super().__init__()
        self.patch_embed = PatchProj(channels, embed)
        self.blocks = nn.ModuleList(
            SwinBlock(embed, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, groups)
            for i in range(depth)
        )
        self.patch_unembed = PatchProj(embed, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for block in self.blocks:
            x = block(x)
        return self.patch_unembed(x)
