"""The OneDC family's model: host side (z, priors, y entropy decoding) and the decode graph.

    .edc or OneDC file -> container -> z indices (14 bits each) -> FSQ codes z_hat
      -> hyper decoder -> four prior passes, each choosing the Gaussian of every y symbol of the pass
         (float32 torch on the host: the encoder's numbers bit for bit) -> y_hat
    graph (y_hat, z_hat) -> semantic adaptor (tokens) + synthesis g_s (x_hat) -> UNet at t = 999 -> x0
      -> VAE decoder (windowed mid-block attention) -> image

Submodules: `nets` (OneDC's codec file, `model_1.safetensors`, bare keys under `nets.`) and `gen` (the UNet
with LoRA merged, `vae_reduction`, the VAE; `gen.unet.`, `gen.vae_reduction.`, `gen.vae.`).
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
from torch import nn

from ...errors import StreamError
from ...frames import to_image
from ...rate import RatePoint
from ...spec import StreamSpec, compute_fingerprint
from ...zoo import CodecModel
from . import container, passes
from .config import OneDCConfig
from .gaussian import scale_indices
from .generator import Generator, alphas_cumprod
from .nets import CodecWidths, OneDCNets
from .rans import RansReader

# the networks that choose each symbol's distribution: a stream means something only with these weights
PRIOR_MODULES = ("nets.hyper_dec", "nets.y_prior_fusion", "nets.y_spatial_prior_reduction",
                 "nets.y_spatial_prior_adaptor_1", "nets.y_spatial_prior_adaptor_2",
                 "nets.y_spatial_prior_adaptor_3", "nets.y_spatial_prior")


class DecodeUnit(nn.Module):
    """What a OneDC decoder runs after the host side: (y_hat, z_hat) -> (1, 3, Hp, Wp) image in [0, 1]."""

    def __init__(self, model: "OneDCModel"):
        super().__init__()
        self.model = model

    def forward(self, y_hat: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
        return self.model.render(y_hat, z_hat)


class PriorUnit(nn.Module):
    """Pass k's prior as one graph: (z_hat, y_hat decoded so far) -> (scales, means). What a host without
    torch would run in another runtime; `benchmarks.prior_agreement` counts where such a runtime picks
    another scale index than torch's."""

    def __init__(self, nets: OneDCNets, k: int):
        super().__init__()
        self.nets, self.k = nets, k

    def forward(self, z_hat: torch.Tensor, y_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, params = self.nets.hyper(z_hat)
        if self.k == 0:
            return self.nets.split(params)
        return self.nets.spatial_prior(self.k, y_hat, self.nets.common(params))


class OneDCModel(CodecModel):
    family = "onedc"
    coder = "family"
    stages = {
        "hyper": ("nets.hyper_dec.to_entropy", "nets.y_prior_fusion", "nets.y_spatial_prior_reduction"),
        "prior": ("nets.y_spatial_prior_adaptor_1", "nets.y_spatial_prior_adaptor_2",
                  "nets.y_spatial_prior_adaptor_3", "nets.y_spatial_prior"),
        "semantic": ("nets.hyper_dec.feat_in", "nets.semantic_adaptor"),
        "synthesis": ("nets.dec",),
        "vae_reduction": ("gen.vae_reduction",),
        "unet": ("gen.unet",),
        "vae": ("gen.vae.post_quant_conv", "gen.vae.decoder"),
    }

    def __init__(self, cfg: OneDCConfig):
        super().__init__()
        self.cfg = cfg
        self.widths = CodecWidths.from_dict(cfg.codec)
        self.nets = OneDCNets(self.widths)
        self.gen = Generator(cfg.unet, cfg.vae, self.widths.ctrl_ch, cfg.vae_attn_patch, cfg.scheduler,
                             cfg.timestep)
        self.rates = [RatePoint(rate=0, sigma=0.0, timestep=float(cfg.timestep), input_scale=1.0)]  # no noise drawn

    # --- the stream ------------------------------------------------------------------------------
    def stream_spec(self) -> StreamSpec:
        cfg = self.cfg
        spec = StreamSpec(model=cfg.name, downsample=cfg.downsample, multiple=cfg.multiple,
                          latent_channels=cfg.latent_channels, codebook_size=0,
                          prior_counts=np.zeros((1, 0), np.int64), rates=self.rates, coder="family",
                          container="onedc")
        # the stream's meaning: geometry, FSQ levels, z-only or not, and the prior networks' weights
        head = np.frombuffer(f"{list(cfg.fsq_levels)}|{cfg.z_only}|{self.widths.to_dict()}".encode(), np.uint8)
        weights = [head.astype(np.float32)] + [p.detach().cpu().float().numpy() for name in PRIOR_MODULES
                                               for p in self.get_submodule(name).parameters()]
        spec.fingerprint = compute_fingerprint(spec, weights)
        return spec

    def image_input(self, rgb: np.ndarray) -> torch.Tensor:
        """H x W x 3 uint8 -> (1, 3, Hp, Wp) in [-1, 1] as OneDC makes it (ToTensor() * 2 - 1), padded at
        the bottom/right to multiples of 64 (cfg.pad_mode)."""
        h, w = rgb.shape[:2]
        hp, wp = -(-h // self.cfg.multiple) * self.cfg.multiple, -(-w // self.cfg.multiple) * self.cfg.multiple
        padded = np.pad(rgb, ((0, hp - h), (0, wp - w), (0, 0)), mode=self.cfg.pad_mode)
        x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))).float()[None] / 255.0
        return x * 2.0 - 1.0

    def host_nets(self) -> OneDCNets:
        """The codec networks in float32 on the CPU, where the priors run whatever device the graph is on:
        the encoder's numbers bit for bit (a CUDA or reduced-precision prior would pick other Gaussians)."""
        if next(self.nets.parameters()).device.type == "cpu":
            return self.nets
        if getattr(self, "_cpu_nets", None) is None:
            self._cpu_nets = [copy.deepcopy(self.nets).float().cpu()]  # a list: not a registered submodule
        return self._cpu_nets[0]

    def _prior(self, params: torch.Tensor, seen: dict | None = None):
        """The four passes' prior as passes.decode_y/encode_y call it: k, y_hat so far -> (scales, means);
        `seen` keeps each pass's prior (trace)."""
        nets = self.host_nets()
        scales0, means0 = (t.numpy() for t in nets.split(params))
        common = nets.common(params)

        def prior(k: int, y_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if k == 0:
                scales, means = scales0, means0
            else:
                scales, means = (t.numpy() for t in nets.spatial_prior(k, torch.from_numpy(y_hat), common))
            if seen is not None:
                seen.update({f"prior{k}_scales": scales, f"prior{k}_means": means})
            return scales, means

        return prior

    @torch.no_grad()
    def read_payload(self, payload: bytes, max_pixels: int | None = None, seen: dict | None = None) -> dict:
        """OneDC's container -> {height, width, z_indices, z_hat, y_hat, record (passes.PassRecord per pass),
        timings (ms: parse, hyper, prior, entropy)}: the host side, float32 on the CPU whatever device the
        graph runs on. `seen` gets the priors (trace)."""
        t0 = time.perf_counter()
        levels = self.cfg.fsq_levels
        height, width, y_stream, z_stream = container.parse(payload, levels, max_pixels or container.MAX_PIXELS)
        h64, w64 = container.z_grid(height, width)
        z_indices = container.unpack_z(z_stream, h64 * w64, levels).reshape(1, h64, w64)
        z_hat = torch.from_numpy(container.fsq_codes(z_indices, levels))
        t1 = time.perf_counter()
        with torch.autocast("cpu", enabled=False):
            _, params = self.host_nets().hyper(z_hat)
            t2 = time.perf_counter()
            prior, prior_s = self._prior(params, seen), 0.0

            def timed(k: int, y_hat: np.ndarray):  # the priors' share, apart from the entropy decoder's
                nonlocal prior_s
                t = time.perf_counter()
                out = prior(k, y_hat)
                prior_s += time.perf_counter() - t
                return out

            n, (h16, w16) = self.widths.bottleneck_ch, params.shape[2:]
            if self.cfg.z_only and y_stream:
                raise StreamError("stream carries a y-stream, but this OneDC model is z-only")
            reader = None if self.cfg.z_only else RansReader(y_stream)
            y_hat, record = passes.decode_y(reader, timed, n, h16, w16, z_only=self.cfg.z_only)
        t3 = time.perf_counter()
        timings = {"parse_ms": (t1 - t0) * 1e3, "hyper_ms": (t2 - t1) * 1e3, "prior_ms": prior_s * 1e3,
                   "entropy_ms": (t3 - t2 - prior_s) * 1e3}
        return {"height": height, "width": width, "z_indices": z_indices, "z_hat": z_hat.numpy(),
                "y_hat": y_hat, "record": record, "timings": timings}

    @torch.no_grad()
    def write_payload(self, rgb: np.ndarray, x_latent: torch.Tensor | None = None) -> tuple[bytes, dict]:
        """H x W x 3 uint8 -> OneDC's container bytes (and what the encoder saw). `x_latent`: the VAE latent
        to condition on; by default the VAE posterior's mean (OneDC samples it, which gives another
        stream that decodes just as well)."""
        device = next(self.nets.parameters()).device
        x = self.image_input(rgb).to(device)
        if x_latent is None:
            x_latent = self.gen.vae_encode(x)
        y, sem = self.nets.analysis(x, x_latent.to(device))
        z = self.nets.hyper_analysis(y, sem).float().cpu()
        y = y.float().cpu()  # what gets coded; the priors below decide how, on the host as the decoder does
        with torch.autocast("cpu", enabled=False):
            levels = self.cfg.fsq_levels
            z_indices = container.fsq_indices(z.numpy(), levels)
            z_hat = torch.from_numpy(container.fsq_codes(z_indices, levels))
            _, params = self.host_nets().hyper(z_hat)
            prior = self._prior(params)
            n, (h16, w16) = self.widths.bottleneck_ch, params.shape[2:]
            if self.cfg.z_only:
                y_stream, (y_hat, record) = b"", passes.decode_y(None, prior, n, h16, w16, z_only=True)
            else:
                y_stream, y_hat, record = passes.encode_y(y.numpy(), prior, n, h16, w16)
        h, w = rgb.shape[:2]
        data = container.write(h, w, y_stream, z_indices, levels)
        return data, {"y": y.numpy(), "z": z.numpy(), "z_indices": z_indices, "y_hat": y_hat, "record": record}

    @staticmethod
    def prior_indices(scales: np.ndarray) -> np.ndarray:
        """The CDF index each scale selects (what must agree between encoder and decoder)."""
        return scale_indices(np.ascontiguousarray(scales, np.float32))

    def prior_units(self) -> list[nn.Module]:
        """The four passes' priors as graphs (PriorUnit): inputs z_hat and y_hat so far."""
        return [PriorUnit(self.host_nets(), k).eval() for k in range(4)]

    @torch.no_grad()
    def prior_inputs(self, rgb: np.ndarray) -> dict:
        """What the priors see when the encoder codes `rgb`: z_hat, per pass the y_hat so far and the torch
        prior's scales, and the masks of the positions each pass codes."""
        _, enc = self.write_payload(rgb)  # the encoder's y_hat is the decoder's (tested), no decode needed
        y_hat = enc["y_hat"]
        masks = [m[None] for m in passes.pass_masks(self.widths.bottleneck_ch, *y_hat.shape[2:])]
        before, acc = [], np.zeros_like(y_hat)
        for mask in masks:  # before pass k: y_hat on the earlier passes' positions, zeros elsewhere
            before.append(acc.copy())
            acc = acc + y_hat * mask
        return {"z_hat": container.fsq_codes(enc["z_indices"], self.cfg.fsq_levels), "y_hat_before": before,
                "masks": masks}

    # --- the decode graph ----------------------------------------------------------------------------
    def render(self, y_hat: torch.Tensor, z_hat: torch.Tensor) -> torch.Tensor:
        """(y_hat, z_hat) -> (1, 3, Hp, Wp) image in [0, 1]: everything after the host side."""
        return self.gen(*self._x_hat(y_hat, z_hat))

    def _x_hat(self, y_hat, z_hat):
        z_semantic = self.nets.hyper_dec.feat_in(z_hat)  # the graph needs z's semantics, not its entropy branch
        semantic_map, tokens = self.nets.tokens(z_semantic)
        return self.nets.synthesis(y_hat, semantic_map), tokens

    def decode_unit(self) -> nn.Module:
        return DecodeUnit(self)

    @torch.no_grad()
    def decode_payload(self, payload: bytes, max_pixels: int | None = None) -> tuple[np.ndarray, dict, dict]:
        """-> ((1, 3, Hp, Wp) float image in [0, 1], the host side's result, timings in ms: the host side's
        stages and the graph's)."""
        host = self.read_payload(payload, max_pixels)
        t1 = time.perf_counter()
        device = next(self.gen.parameters()).device
        image = self.render(torch.from_numpy(host["y_hat"]).to(device), torch.from_numpy(host["z_hat"]).to(device))
        out = image.float().cpu().numpy()
        t2 = time.perf_counter()
        return out, host, {**host["timings"], "graph_ms": (t2 - t1) * 1e3}

    @torch.no_grad()
    def trace_payload(self, payload: bytes) -> dict[str, np.ndarray]:
        """Every stage of one decode under the reference fixture's names (image_u8: the decoded image)."""
        priors: dict = {}
        host = self.read_payload(payload, seen=priors)
        y_hat, z_hat = torch.from_numpy(host["y_hat"]), torch.from_numpy(host["z_hat"])
        z_semantic, z_entropy = self.nets.hyper_dec(z_hat)
        _, params = self.nets.hyper(z_hat)
        semantic_map, tokens = self.nets.tokens(z_semantic)
        x_hat = self.nets.synthesis(y_hat, semantic_map)
        out = {"z_indices": host["z_indices"].astype(np.int32), "z_hat": host["z_hat"], "z_semantic": z_semantic,
               "z_entropy": z_entropy, "common_params": self.nets.common(params), "y_hat": host["y_hat"],
               "semantic_map": semantic_map, "tokens": tokens, "x_hat": x_hat}
        out.update(priors)
        masks = passes.pass_masks(self.widths.bottleneck_ch, *host["y_hat"].shape[2:])
        for k, rec in enumerate(host["record"]):
            out.update({f"pass{k}_mask": masks[k][None].astype(np.uint8), f"pass{k}_scales_r": rec.scales_r,
                        f"pass{k}_scale_index": rec.scale_index, f"pass{k}_symbols": rec.symbols})
        out.update(self.gen.intermediates(x_hat, tokens))
        height, width = host["height"], host["width"]
        out["image_float"] = out["image_float"][..., :height, :width]
        out["image_u8"] = to_image(out["image_float"].numpy(), height, width)
        out["timestep"] = np.array([self.cfg.timestep], np.int64)
        out["alpha_prod_t"] = np.array([float(alphas_cumprod(self.cfg.scheduler)[self.cfg.timestep])], np.float64)
        return {k: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for k, v in out.items()}

    def describe_payload(self, payload: bytes) -> dict:
        """What `info` shows of a OneDC file, without decoding it."""
        height, width, y_stream, z_stream = container.parse(payload, self.cfg.fsq_levels)
        return {"container": "onedc", "width": width, "height": height, "y_stream_bytes": len(y_stream),
                "z_stream_bytes": len(z_stream)}

    # --- the rest of the contract ----------------------------------------------------------------
    def count_decode(self, height: int, width: int) -> None:
        """One decode's computation on meta tensors (FLOP counting): the hyper decoder and the three spatial
        prior runs of the host side, then the graph."""
        h64, w64 = height // 64, width // 64
        z_hat = torch.zeros(1, len(self.cfg.fsq_levels), h64, w64, device="meta")
        _, params = self.nets.hyper(z_hat)
        common = self.nets.common(params)
        y_hat = torch.zeros(1, self.widths.bottleneck_ch, h64 * 4, w64 * 4, device="meta")
        for k in (1, 2, 3):
            self.nets.spatial_prior(k, y_hat, common)
        self.render(y_hat, z_hat)

    def decode_side_modules(self) -> list[nn.Module]:
        n = self.nets
        return [n.hyper_dec, n.y_prior_fusion, n.y_spatial_prior_reduction, n.y_spatial_prior_adaptor_1,
                n.y_spatial_prior_adaptor_2, n.y_spatial_prior_adaptor_3, n.y_spatial_prior, n.semantic_adaptor,
                n.dec, self.gen.unet, self.gen.vae_reduction, self.gen.vae.post_quant_conv, self.gen.vae.decoder]
