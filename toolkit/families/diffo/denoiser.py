"""The one-step denoiser: ResShift's Swin-UNet with DiffO's code conditioning.

Names match DiffO's `ema_model_*.pth` (time_embed, input_blocks, conv_in_extended, middle_block,
output_blocks, out). Time conditioning is FiLM (scale-shift norm); a Swin layer follows the first
res block of every level, going down and coming up, and sits in the middle block.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import Upsample
from .config import DenoiserConfig
from .swin import SwinLayer, group_norm


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, guided-diffusion layout [cos, sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(cin, groups), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, 2 * cout))
        self.out_layers = nn.Sequential(group_norm(cout, groups), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(cout, cout, 3, padding=1))
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        for layer in self.out_layers[1:]:
            h = layer(h)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class EmbedSequential(nn.Sequential):
    """Passes the time embedding to the children that take one (ResShift's TimestepEmbedSequential)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class SwinUNet(nn.Module):
    def __init__(self, cfg: DenoiserConfig, latent_channels: int, code_channels: int):
        super().__init__()
        mc, g = cfg.model_channels, cfg.norm_groups
        emb = mc * 4
        heads = cfg.swin_embed_dim // cfg.swin_head_channels
        swin = lambda ch, ws: SwinLayer(ch, cfg.swin_embed_dim, heads, ws, cfg.swin_depth,  # noqa: E731
                                        cfg.mlp_ratio, g)
        self.model_channels = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.conv_in_extended = nn.Conv2d(code_channels, cfg.cond_channels, 3, padding=1)

        ch = mc * cfg.channel_mult[0]
        self.input_blocks = nn.ModuleList(
            [EmbedSequential(nn.Conv2d(latent_channels + cfg.cond_channels, ch, 3, padding=1))])
        skip_chans = [ch]
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for i in range(cfg.num_res_blocks):
                layers = [ResBlock(ch, mc * mult, emb, g)]
                ch = mc * mult
                if i == 0:
                    layers.append(swin(ch, cfg.window_sizes[level]))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != last:
                self.input_blocks.append(EmbedSequential(Downsample(ch)))
                skip_chans.append(ch)

        self.middle_block = EmbedSequential(ResBlock(ch, ch, emb, g), swin(ch, cfg.window_of_middle),
                                           ResBlock(ch, ch, emb, g))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_chans.pop(), mc * mult, emb, g)]
                ch = mc * mult
                if i == 0:
                    layers.append(swin(ch, cfg.window_sizes[level]))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(group_norm(ch, g), nn.SiLU(), nn.Conv2d(ch, latent_channels, 3, padding=1))
        if cfg.residual:
            nn.init.zeros_(self.out[2].weight)
            nn.init.zeros_(self.out[2].bias)

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        return self.time_embed(timestep_embedding(t, self.model_channels))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """x: scaled noisy latent; emb: time embedding (constant per rate); code: dequantized code."""
        h = torch.cat([x, self.conv_in_extended(code)], dim=1)
        skips = []
        for module in self.input_blocks:
            h = module(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)
