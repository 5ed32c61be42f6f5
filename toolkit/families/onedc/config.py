"""OneDC configurations: the codec's widths, the diffusers configs of its UNet and VAE, and the
constants neither checkpoint file carries (LoRA alpha is merged away on import; the VAE's attention
patch, the scheduler and the FSQ levels are not).

`onedc` is OneDC's released model (SD-1.5 UNet, SD-2.1 VAE, 320-channel x_hat); its weights are
public but not shipped here, so the named model runs with seeded random weights.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import ClassVar

# diffusers' UNet2DConditionModel config of Stable Diffusion 1.5 (OneDC loads it from the hub)
SD15_UNET = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
# diffusers' AutoencoderKL config of Stable Diffusion 2.1's VAE
SD21_VAE = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
    "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 768,
    "scaling_factor": 0.18215, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
# DDIM constants of SD-1.5 (the scheduler config OneDC reads); OneDC denoises once, at t = 999
SD15_SCHEDULER = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "num_train_timesteps": 1000}
TIMESTEP = 999
FSQ_LEVELS = (4, 4, 4, 4, 4, 4, 4)  # 14 bits per z index
LORA_ALPHA = 8.0
VAE_ATTN_PATCH = 16


@dataclass(frozen=True)
class OneDCConfig:
    family: ClassVar[str] = "onedc"

    name: str
    codec: dict  # nets.CodecWidths.to_dict()
    unet: dict  # diffusers UNet2DConditionModel config (before OneDC swaps conv_in)
    vae: dict  # diffusers AutoencoderKL config
    scheduler: dict = field(default_factory=lambda: dict(SD15_SCHEDULER))
    timestep: int = TIMESTEP
    vae_attn_patch: int = VAE_ATTN_PATCH
    fsq_levels: tuple[int, ...] = FSQ_LEVELS
    lora_alpha: float = LORA_ALPHA  # recorded from the import; the file holds merged weights
    init_seed: int = 0
    # z-only model (OneDC's 0.0034 bpp point): no y-stream, y is the prior's means; it pads by reflection
    z_only: bool = False
    pad_mode: str = "edge"  # numpy.pad mode of the encoder's padding to 64: OneDC replicates ("edge")

    # the stream geometry every family states
    num_rates: ClassVar[int] = 1  # one model per lambda: a OneDC model codes one rate
    multiple: ClassVar[int] = 64  # OneDC pads to 64 (z at 1/64)
    downsample: ClassVar[int] = 16  # y at 1/16
    codebook_size: ClassVar[int] = 0  # no VQ codebook

    @property
    def latent_channels(self) -> int:
        return int(self.codec["bottleneck_ch"])

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "OneDCConfig":
        d = json.loads(text)
        d["fsq_levels"] = tuple(d.get("fsq_levels", FSQ_LEVELS))
        return cls(**d)
