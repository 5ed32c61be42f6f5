"""The DiffO-style codec: pixel autoencoder, VQ-residual latent code, one-step Swin-UNet denoiser.

    encode: image -> pixel_vq.encode -> latent_vq.encode -> residual VQ -> indices
    decode: indices -> codebook lookup -> latent_vq.decode (z_base)
            -> (z_base + sigma(r) * noise) * input_scale(r) -> ONE denoiser call at t(r) -> x0
            -> pixel_vq.decode -> image

Submodule names map onto DiffO's checkpoints by prefix: pixel_vq <- GT_vq_model,
latent_vq <- vq_model, denoiser <- ema_model.
"""

from __future__ import annotations

import torch
from torch import nn

from .autoencoder import Autoencoder
from .config import CONFIGS as NAMED
from .config import CodecConfig
from .denoiser import SwinUNet
from ...quantizer import ResidualVQ
from ...rate import rate_table
from ...zoo import CodecModel


class DiffoEncodeSide:
    """The encode side and the code under DiffO's module names (pixel_vq, latent_vq + its quantize): the
    DiffO family has it, and so does every student of it (edge.py), which is why they share streams."""

    @property
    def quantizer(self) -> ResidualVQ:
        return self.latent_vq.quantize

    def encode_code(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent_vq.encode(self.pixel_vq.encode(x))


class Codec(DiffoEncodeSide, CodecModel):
    family = "diffo"
    stages = {"latent": ("latent_vq.post_quant_conv", "latent_vq.decoder"), "denoiser": ("denoiser",),
              "pixel": ("pixel_vq.post_quant_conv", "pixel_vq.decoder")}
    float_layers = {
        "conditioning": (r"(^|[./])emb_layers([./]|$)",
                         "the FiLM layers (ResBlock emb_layers) that turn the per-rate time embedding into "
                         "scale and shift: one vector per rate, negligible compute, and every feature map "
                         "is multiplied by their output, so their error is not averaged out"),
    }

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.pixel_vq = Autoencoder(cfg.pixel)
        self.latent_vq = Autoencoder(cfg.latent, code_channels=cfg.code_dim)
        self.latent_vq.quantize = ResidualVQ(cfg.codebook_size, cfg.code_dim, cfg.residual_stages)
        self.denoiser = SwinUNet(cfg.denoiser, cfg.latent_channels, cfg.code_dim)
        self.rates = rate_table(cfg.rate.sigma_max, cfg.rate.decay, cfg.num_rates, cfg.rate.t_max)

    # --- decode side (the graph that gets exported) ----------------------------------------
    def rate_constants(self) -> dict[str, torch.Tensor]:
        """sigma(r), input_scale(r) and the time embedding of t(r), run through the time MLP."""
        device = next(self.denoiser.parameters()).device
        t = torch.tensor([p.timestep for p in self.rates], dtype=torch.float32, device=device)
        return {"sigma": torch.tensor([p.sigma for p in self.rates], dtype=torch.float32, device=device),
                "input_scale": torch.tensor([p.input_scale for p in self.rates], dtype=torch.float32,
                                            device=device),
                "emb": self.denoiser.time_embedding(t)}

    def denoise(self, z_base, code, noise, sigma, input_scale, emb) -> torch.Tensor:
        """The one denoiser call; sigma and input_scale are (B,) tensors (a batch may mix rates),
        emb the time embedding of each sample's t(r)."""
        return self._denoise(z_base, code, noise, sigma, input_scale, emb)["x0"]

    def _denoise(self, z_base, code, noise, sigma, input_scale, emb) -> dict[str, torch.Tensor]:
        col = lambda v: v.view(-1, 1, 1, 1)  # noqa: E731
        x_t = z_base + col(sigma) * noise  # DiffO's prior sample x_T = z_base + kappa*sqrt(eta_T)*eps
        denoiser_input = x_t * col(input_scale)
        x0 = self.denoiser(denoiser_input, emb, code)
        return {"x_t": x_t, "denoiser_input": denoiser_input,
                "x0": z_base + x0 if self.cfg.denoiser.residual else x0}

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel decoder; maps [-1, 1] to a [0, 1] image."""
        return self.to_unit(self.pixel_vq.decode(z))

    @staticmethod
    def to_unit(image_raw: torch.Tensor) -> torch.Tensor:
        return ((image_raw + 1.0) * 0.5).clamp(0.0, 1.0)

    def decode_code(self, code, noise, sigma, input_scale, emb) -> torch.Tensor:
        return self.intermediates(code, noise, sigma, input_scale, emb)["image"]

    def intermediates(self, code, noise, sigma, input_scale, emb) -> dict[str, torch.Tensor]:
        """Every intermediate of the decode after the codebook lookup (what `edgecodec trace` saves)."""
        z_base = self.latent_vq.decode(code)
        out = {"code": code, "z_base": z_base, **self._denoise(z_base, code, noise, sigma, input_scale, emb)}
        out["image_raw"] = self.pixel_vq.decode(out["x0"])
        out["image"] = self.to_unit(out["image_raw"])
        return out

    def decode_without_denoiser(self, indices: torch.Tensor) -> torch.Tensor:
        """Ablation: the dequantized latent straight through the pixel decoder."""
        return self.render(self.latent_vq.decode(self.quantizer.dequantize(indices)))

    def ablations(self) -> dict[str, object]:
        return {"without_denoiser": self.decode_without_denoiser}

    def decode_side_modules(self) -> list[nn.Module]:
        lv, pv = self.latent_vq, self.pixel_vq
        return [lv.quantize, lv.post_quant_conv, lv.decoder, self.denoiser, pv.post_quant_conv, pv.decoder]


# the family's registry entries (zoo.FAMILIES)
CONFIG = CodecConfig
MODEL = Codec
CONFIGS = NAMED

__all__ = ["CONFIG", "CONFIGS", "MODEL", "Codec", "DiffoEncodeSide"]
