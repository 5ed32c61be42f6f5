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
from .config import CodecConfig
from .denoiser import SwinUNet
from .quantizer import ResidualVQ
from .rate import rate_table
from .spec import StreamSpec, compute_fingerprint


class Codec(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.pixel_vq = Autoencoder(cfg.pixel)
        self.latent_vq = Autoencoder(cfg.latent, code_channels=cfg.code_dim)
        self.latent_vq.quantize = ResidualVQ(cfg.codebook_size, cfg.code_dim, cfg.residual_stages)
        self.denoiser = SwinUNet(cfg.denoiser, cfg.latent_channels, cfg.code_dim)
        self.rates = rate_table(cfg.rate.sigma_max, cfg.rate.decay, cfg.num_rates)

    # --- encode side -------------------------------------------------------------------------
    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor, rate: int) -> torch.Tensor:
        """x: (1, 3, Hp, Wp) in [-1, 1] -> (1, rate + 1, Hp/16, Wp/16) int64."""
        e = self.latent_vq.encode(self.pixel_vq.encode(x))
        return self.latent_vq.quantize.quantize(e, rate + 1)

    # --- decode side (the graph that gets exported) ----------------------------------------
    def decode_latent(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Codebook lookup and latent decoder: returns (code, z_base)."""
        code = self.latent_vq.quantize.dequantize(indices)
        return code, self.latent_vq.decode(code)

    def time_embedding(self, rate: int) -> torch.Tensor:
        p = self.rates[rate]
        device = next(self.denoiser.parameters()).device
        return self.denoiser.time_embedding(torch.tensor([p.timestep], dtype=torch.float32, device=device))

    def denoise(self, z_base, code, noise, sigma, input_scale, emb) -> torch.Tensor:
        """The one denoiser call. sigma and input_scale are floats, or (B,) tensors when a batch
        mixes rates; emb is the time embedding of each sample's t(r)."""
        col = lambda v: v.view(-1, 1, 1, 1) if torch.is_tensor(v) else v  # noqa: E731
        x_t = (z_base + col(sigma) * noise) * col(input_scale)
        x0 = self.denoiser(x_t, emb, code)
        return z_base + x0 if self.cfg.denoiser.residual else x0

    def render(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel decoder; maps [-1, 1] to a [0, 1] image."""
        return ((self.pixel_vq.decode(z) + 1.0) * 0.5).clamp(0.0, 1.0)

    def decode_code(self, code, noise, sigma, input_scale, emb) -> torch.Tensor:
        """Everything after the codebook lookup; shared by the eager path and the export graph."""
        z_base = self.latent_vq.decode(code)
        return self.render(self.denoise(z_base, code, noise, sigma, input_scale, emb))

    def decode_graph(self, indices: torch.Tensor, noise: torch.Tensor, rate: int) -> torch.Tensor:
        p = self.rates[rate]
        code = self.latent_vq.quantize.dequantize(indices)
        return self.decode_code(code, noise, p.sigma, p.input_scale, self.time_embedding(rate))

    def decode_without_denoiser(self, indices: torch.Tensor) -> torch.Tensor:
        """Ablation: the dequantized latent straight through the pixel decoder."""
        return self.render(self.decode_latent(indices)[1])

    # --- what streams depend on ---------------------------------------------------------------
    def stream_spec(self) -> StreamSpec:
        cfg = self.cfg
        codebooks = [cb.detach().cpu().float().numpy() for cb in self.latent_vq.quantize.codebooks()]
        spec = StreamSpec(model=cfg.name, downsample=cfg.downsample, multiple=cfg.multiple,
                          latent_channels=cfg.latent_channels, codebook_size=cfg.codebook_size,
                          prior_counts=self.latent_vq.quantize.prior.cpu().numpy(), rates=self.rates)
        spec.fingerprint = compute_fingerprint(spec, codebooks)
        return spec


class DecodeGraph(nn.Module):
    """The exported unit: (indices, noise, rate) -> image in [0, 1].

    One graph serves every rate: the per-rate values (which VQ stages count, sigma, input scale
    and the time embedding of t(r), run through the time MLP) are folded into constant tables
    that the rate input indexes. Indices always carry every stage; unused ones are zeros.
    """

    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec
        n, stages = codec.cfg.num_rates, codec.cfg.num_rates
        with torch.no_grad():
            emb = torch.cat([codec.time_embedding(r) for r in range(n)])
        self.register_buffer("stage_mask", (torch.arange(stages)[None] <= torch.arange(n)[:, None]).float())
        self.register_buffer("sigma", torch.tensor([p.sigma for p in codec.rates], dtype=torch.float32))
        self.register_buffer("input_scale", torch.tensor([p.input_scale for p in codec.rates], dtype=torch.float32))
        self.register_buffer("emb", emb)

    def forward(self, indices: torch.Tensor, noise: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        mask = self.stage_mask[rate]  # (1, S)
        code = 0
        for s, cb in enumerate(self.codec.latent_vq.quantize.codebooks()):
            code = code + mask[:, s, None, None, None] * torch.nn.functional.embedding(indices[:, s], cb)
        code = code.permute(0, 3, 1, 2)
        return self.codec.decode_code(code, noise, self.sigma[rate], self.input_scale[rate], self.emb[rate])


def decode_side_modules(codec: Codec) -> list[nn.Module]:
    """What a decoder carries: codebooks, latent decoder, denoiser, pixel decoder."""
    lv, pv = codec.latent_vq, codec.pixel_vq
    return [lv.quantize, lv.post_quant_conv, lv.decoder, codec.denoiser, pv.post_quant_conv, pv.decoder]


def decode_side_parameters(codec: Codec) -> int:
    return sum(p.numel() for m in decode_side_modules(codec) for p in m.parameters())


__all__ = ["Codec", "DecodeGraph", "decode_side_modules", "decode_side_parameters"]
