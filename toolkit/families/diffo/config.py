"""Codec configurations: one dataclass describes a member of the DiffO-style family.

`diffo` reproduces the published DiffO decoder sizes (seeds.md) so its checkpoints map onto
our modules by key prefix; `tiny` uses the same module types at edge width.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class AutoencoderConfig:
    """A taming/LDM-style encoder-decoder pair (the names follow taming-transformers)."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_levels: tuple[int, ...]  # level indices (0 = finest) that carry self-attention
    io_channels: int  # image channels (3) for the pixel model, latent channels for the latent model
    z_channels: int
    norm_groups: int = 32

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class DenoiserConfig:
    """ResShift's Swin-UNet (UNetModelSwin) as DiffO uses it for its one denoising call."""

    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    cond_channels: int  # the quantized code enters through a 3x3 conv to this many channels
    swin_embed_dim: int
    swin_head_channels: int
    swin_depth: int
    window_sizes: tuple[int, ...]  # one per level; the middle block uses the last
    mlp_ratio: float = 4.0
    norm_groups: int = 32
    # False: predict x0 directly (DiffO). True: predict x0 - z_base, which a small model trained
    # briefly on a CPU learns far more easily; the output conv then starts at zero.
    residual: bool = False
    middle_window: int | None = None  # the middle block's window; None: the last level's (DiffO's rule differs)

    @property
    def multiple(self) -> int:
        """Latent size multiple: every level's size must split into whole windows."""
        m = 1
        for level, ws in enumerate(self.window_sizes):
            m = max(m, ws * 2**level)
        return max(m, self.window_of_middle * 2 ** (len(self.window_sizes) - 1))

    @property
    def window_of_middle(self) -> int:
        return self.window_sizes[-1] if self.middle_window is None else self.middle_window


@dataclass(frozen=True)
class RateConfig:
    """Rate-aware noise modulation (see rate.py): sigma(r) = sigma_max * decay**r."""

    sigma_max: float
    decay: float
    t_max: float = 1.0  # the timestep of rate 0 (DiffO's T - 1); t(r) = t_max * sigma(r) / sigma_max


@dataclass(frozen=True)
class CodecConfig:
    family: ClassVar[str] = "diffo"  # zoo.FAMILIES

    name: str
    pixel: AutoencoderConfig  # image <-> continuous latent at 1/16 (the "GT" autoencoder)
    latent: AutoencoderConfig  # continuous latent <-> code space (no resampling)
    denoiser: DenoiserConfig
    rate: RateConfig
    codebook_size: int
    code_dim: int
    residual_stages: int  # rate r uses the base code and the first r residual stages
    init_seed: int = 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def num_rates(self) -> int:
        return self.residual_stages + 1

    @property
    def downsample(self) -> int:
        return self.pixel.downsample * self.latent.downsample

    @property
    def multiple(self) -> int:
        """Images are padded to this multiple (16 per latent cell times the UNet's need)."""
        return self.downsample * self.denoiser.multiple

    @property
    def latent_channels(self) -> int:
        return self.pixel.z_channels

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "CodecConfig":
        d = json.loads(text)
        tup = lambda x: tuple(x) if isinstance(x, list) else x  # noqa: E731
        sub = lambda klass, v: klass(**{k: tup(x) for k, x in v.items()})  # noqa: E731
        return cls(
            name=d["name"],
            pixel=sub(AutoencoderConfig, d["pixel"]),
            latent=sub(AutoencoderConfig, d["latent"]),
            denoiser=sub(DenoiserConfig, d["denoiser"]),
            rate=sub(RateConfig, d["rate"]),
            codebook_size=d["codebook_size"],
            code_dim=d["code_dim"],
            residual_stages=d["residual_stages"],
            init_seed=d.get("init_seed", 0),
            extra=d.get("extra", {}),
        )


DIFFO = CodecConfig(
    name="diffo",
    # taming VQGAN f16: ch 128, ch_mult [1,1,2,2,4], 2 res blocks, attention at 1/16, z 256
    pixel=AutoencoderConfig(ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attn_levels=(4,),
                            io_channels=3, z_channels=256),
    # LDM-style latent VQ model: ch 128, ch_mult [4] (512 internal), 2 res blocks, no resampling
    latent=AutoencoderConfig(ch=128, ch_mult=(4,), num_res_blocks=2, attn_levels=(0,),
                             io_channels=256, z_channels=256),
    denoiser=DenoiserConfig(model_channels=160, channel_mult=(1, 2, 2, 4), num_res_blocks=2,
                            cond_channels=64, swin_embed_dim=192, swin_head_channels=32,
                            swin_depth=2, window_sizes=(4, 4, 4, 2)),
    # kappa * sqrt(eta_T) = 2.0 * 0.8 = 1.6 at DiffO's own (lowest) rate
    rate=RateConfig(sigma_max=1.6, decay=0.5),
    codebook_size=256,
    code_dim=256,
    residual_stages=2,
)

TINY = CodecConfig(
    name="tiny",
    pixel=AutoencoderConfig(ch=16, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=1, attn_levels=(4,),
                            io_channels=3, z_channels=32, norm_groups=8),
    latent=AutoencoderConfig(ch=32, ch_mult=(2,), num_res_blocks=1, attn_levels=(0,),
                             io_channels=32, z_channels=32, norm_groups=8),
    denoiser=DenoiserConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                            cond_channels=16, swin_embed_dim=32, swin_head_channels=16,
                            swin_depth=2, window_sizes=(4, 2), mlp_ratio=2.0, norm_groups=8,
                            residual=True),
    rate=RateConfig(sigma_max=1.0, decay=0.5),
    codebook_size=256,
    code_dim=32,
    residual_stages=3,
)

CONFIGS: dict[str, CodecConfig] = {c.name: c for c in (DIFFO, TINY)}
