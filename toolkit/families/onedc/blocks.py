"""Building blocks of OneDC's codec networks, written from the architecture facts (not OneDC's code).

Module and parameter names follow the checkpoint keys of OneDC's `model_1.safetensors`:
- DCVC-style blocks (`src/modules/dcvc.py` in OneDC): DepthConvBlock4 = DepthConv + ConvFFN3,
  ResidualBlockUpsample.
- VQGAN-style blocks (`src/modules/vqgan/blocks.py`): ResnetBlock and single-head AttnBlock, GroupNorm(32, eps 1e-6),
  bias-free 3x3 convs in the ResnetBlock.
- diffusers UNet2DModel pieces (the codec encoder's UNet): ResnetBlock2D with a time-embedding projection,
  multi-head spatial self-attention (`to_q/to_k/to_v/to_out.0`), GroupNorm(32, eps 1e-5), stride-2 conv
  downsampling and nearest x2 + 3x3 conv upsampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import AttnBlock, Upsample, group_norm

UNET_EPS = 1e-5  # diffusers UNet2DModel's norm_eps
UNET_HEAD_DIM = 8  # UNet2DModel's attention_head_dim default: heads = channels // 8, not stored in the weights


class DepthConv(nn.Module):
    """1x1 + LeakyReLU(0.01), depthwise 3x3, 1x1 to out_ch; residual through a 1x1 adaptor when widths differ."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(in_ch, in_ch, 1), nn.LeakyReLU(0.01))
        self.depth_conv = nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch)
        self.conv2 = nn.Conv2d(in_ch, out_ch, 1)
        if in_ch != out_ch:
            self.adaptor = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.adaptor(x) if hasattr(self, "adaptor") else x
        return self.conv2(self.depth_conv(self.conv1(x))) + identity


class ConvFFN3(nn.Module):
    """1x1 c -> 4c, halves through LeakyReLU(0.1) and LeakyReLU(0.01) summed, 1x1 2c -> c, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch * 4, 1)
        self.conv_out = nn.Conv2d(ch * 2, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv(x).chunk(2, 1)
        return x + self.conv_out(F.leaky_relu(a, 0.1) + F.leaky_relu(b, 0.01))


class DepthConvBlock4(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.block = nn.Sequential(DepthConv(in_ch, out_ch), ConvFFN3(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ResidualBlockUpsample(nn.Module):
    """x2 up: 1x1 + PixelShuffle, LeakyReLU(0.01), 3x3, LeakyReLU(0.1), plus a 1x1 + PixelShuffle skip."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.subpel_conv = nn.Sequential(nn.Conv2d(in_ch, out_ch * 4, 1), nn.PixelShuffle(2))
        self.conv = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.upsample = nn.Sequential(nn.Conv2d(in_ch, out_ch * 4, 1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.leaky_relu(self.conv(F.leaky_relu(self.subpel_conv(x), 0.01)), 0.1)
        return out + self.upsample(x)


class ResnetBlock(nn.Module):
    """GN-SiLU-3x3 twice (bias-free convs), residual.

    OneDC quirk, kept because the weights were trained with it: when in_ch != out_ch the 1x1 `nin_shortcut`
    (out_ch -> out_ch) is applied to the block's own output, so the block returns h + nin_shortcut(h) and the
    input is not carried through at all. Only the codec encoder's first block (320 -> unet_ch_config[0]) has one.
    """

    def __init__(self, in_ch: int, out_ch: int | None = None):
        super().__init__()
        out_ch = in_ch if out_ch is None else out_ch
        self.norm1 = group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        if in_ch != out_ch:
            self.nin_shortcut = nn.Conv2d(out_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.nin_shortcut(h) if hasattr(self, "nin_shortcut") else x)


def unet_norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, ch, eps=UNET_EPS, affine=True)


class TimeResnetBlock(nn.Module):
    """diffusers ResnetBlock2D ('default' time-embedding mode: SiLU(temb) -> Linear, added after conv1)."""

    def __init__(self, in_ch: int, out_ch: int, temb_ch: int):
        super().__init__()
        self.norm1 = unet_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_ch, out_ch)
        self.norm2 = unet_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        if in_ch != out_ch:
            self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if hasattr(self, "conv_shortcut") else x) + h


class SpatialSelfAttention(nn.Module):
    """diffusers Attention on a feature map: GroupNorm, linear q/k/v, scaled dot-product attention with
    channels // 8 heads of 8, linear out, residual."""

    def __init__(self, ch: int):
        super().__init__()
        self.heads = ch // UNET_HEAD_DIM
        self.group_norm = unet_norm(ch)
        self.to_q = nn.Linear(ch, ch)
        self.to_k = nn.Linear(ch, ch)
        self.to_v = nn.Linear(ch, ch)
        self.to_out = nn.ModuleList([nn.Linear(ch, ch)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(seq)), heads(self.to_k(seq)), heads(self.to_v(seq)))
        out = self.to_out[0](out.transpose(1, 2).reshape(b, h * w, c))
        return out.transpose(1, 2).reshape(b, c, h, w) + x


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DownBlock(nn.Module):
    """diffusers (Attn)DownBlock2D: resnet (+ attention) per layer, each output kept as a skip, then an optional
    stride-2 conv whose output is a skip too."""

    def __init__(self, in_ch: int, out_ch: int, temb_ch: int, layers: int, attention: bool, downsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(TimeResnetBlock(in_ch if i == 0 else out_ch, out_ch, temb_ch)
                                     for i in range(layers))
        if attention:
            self.attentions = nn.ModuleList(SpatialSelfAttention(out_ch) for _ in range(layers))
        if downsample:
            self.downsamplers = nn.ModuleList([Downsample(out_ch)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x)
            skips.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """diffusers (Attn)UpBlock2D: per layer concat one skip (last first), resnet (+ attention); optional
    nearest x2 + 3x3 conv. `skip_chs` are the widths of the skips it consumes, in consumption order."""

    def __init__(self, in_ch: int, out_ch: int, skip_chs: list[int], temb_ch: int, attention: bool,
                 upsample: bool):
        super().__init__()
        self.resnets = nn.ModuleList(TimeResnetBlock((in_ch if i == 0 else out_ch) + s, out_ch, temb_ch)
                                     for i, s in enumerate(skip_chs))
        if attention:
            self.attentions = nn.ModuleList(SpatialSelfAttention(out_ch) for _ in skip_chs)
        if upsample:
            self.upsamplers = nn.ModuleList([Upsample(out_ch)])

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x)
        return x


class MidBlock(nn.Module):
    """diffusers UNetMidBlock2D: resnet, attention, resnet."""

    def __init__(self, ch: int, temb_ch: int):
        super().__init__()
        self.resnets = nn.ModuleList(TimeResnetBlock(ch, ch, temb_ch) for _ in range(2))
        self.attentions = nn.ModuleList([SpatialSelfAttention(ch)])

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x), temb)
