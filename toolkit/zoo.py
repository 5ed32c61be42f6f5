"""The model zoo: what a codec family implements, and the registry that `--model` resolves through.

A family is one module that defines

    CONFIG   its config dataclass (frozen; `name`, `init_seed`, `num_rates`, `multiple`, `downsample`,
             `latent_channels`, `codebook_size`, `to_json()` / `from_json()`)
    MODEL    its `CodecModel` subclass, built from a CONFIG
    CONFIGS  its named configs ({"tiny": ..., ...})

plus one row in FAMILIES below. Everything else (weights, export, quantize, FLOPs, bench, eval, the
CLI) reaches models through `CodecModel` and this registry, and never names a family.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import ClassVar

import torch
from torch import nn

from .errors import ModelError
from .quantizer import rate_mask
from .spec import StreamSpec, compute_fingerprint

# family name -> module (imported on first use)
FAMILIES: dict[str, str] = {
    "diffo": "edgecodec.families.diffo",
    "edge": "edgecodec.families.edge",
    "onedc": "edgecodec.families.onedc",
}
DEFAULT_FAMILY = "diffo"  # model files written before configs named their family


class CodecModel(nn.Module):
    """The interface of a codec family: a code (`quantizer`: codebooks + entropy prior), an encoder
    to it, and a decode side that maps the looked-up code, the portable noise and the rate to an image.

    Two models with equal codebooks, prior, rate table and geometry have the same stream fingerprint,
    so they read each other's streams (a distilled student and its teacher)."""

    family: ClassVar[str]
    # who reads a stream's payload (spec.StreamSpec.coder): "vq", the core's VQ indices + static prior, with
    # the graph taking (indices, noise, rate); or "family": the family's own coder (read_payload/write_payload,
    # decode_payload, trace_payload, describe_payload), as OneDC's FSQ + Gaussian-conditional code with priors
    coder: ClassVar[str] = "vq"
    # decode stages for FLOP accounting: stage -> the submodules that compute it
    stages: ClassVar[dict[str, tuple[str, ...]]] = {}
    # weighted layers the INT8 scheme keeps in float, beyond the structural rules of quantize.scheme:
    # role -> (regex on the layer's module path, why)
    float_layers: ClassVar[dict[str, tuple[str, str]]] = {}

    cfg: object
    rates: list  # rate.RatePoint per rate index

    # --- what a family implements ---------------------------------------------------------------
    @property
    def quantizer(self):
        """The ResidualVQ whose codebooks and prior define what a stream means."""
        raise NotImplementedError

    def encode_code(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, Hp, Wp) image in [-1, 1] -> continuous code (B, D, Hp/ds, Wp/ds), before quantization."""
        raise NotImplementedError

    def rate_constants(self) -> dict[str, torch.Tensor]:
        """Per-rate values the decode side takes, each with the rate on its first axis; the export
        folds them into constant tables indexed by the graph's rate input."""
        raise NotImplementedError

    def decode_code(self, code: torch.Tensor, noise: torch.Tensor, **rate_values) -> torch.Tensor:
        """Everything after the codebook lookup -> (B, 3, Hp, Wp) image in [0, 1]."""
        raise NotImplementedError

    def decode_side_modules(self) -> list[nn.Module]:
        """What a decoder carries (the codebooks included)."""
        raise NotImplementedError

    def adopt(self, teacher: "CodecModel") -> None:
        """A family derived from another model (a distilled student) takes over what defines its streams
        (encoder, codebooks, prior) from `teacher`; others have nothing to adopt."""

    def ablations(self) -> dict[str, object]:
        """Optional decodes that leave a stage out, for `eval --ablation`: name -> fn(indices) -> image."""
        return {}

    # --- shared by every family -----------------------------------------------------------------
    @torch.no_grad()
    def encode_indices(self, x: torch.Tensor, rate: int) -> torch.Tensor:
        """(1, 3, Hp, Wp) image in [-1, 1] -> (1, rate + 1, Hp/ds, Wp/ds) int64 indices."""
        return self.quantizer.quantize(self.encode_code(x), rate + 1)

    def decode_graph(self, indices: torch.Tensor, noise: torch.Tensor, rate: int) -> torch.Tensor:
        """Eager decode of one rate: the same computation the exported graph does."""
        code = self.quantizer.dequantize(indices)
        values = {k: v[rate:rate + 1] for k, v in self.rate_constants().items()}
        return self.decode_code(code, noise, **values)

    def trace(self, indices: torch.Tensor, noise: torch.Tensor, rate: int) -> dict[str, torch.Tensor]:
        """The intermediates of one eager decode, by name (`edgecodec trace`); a family with named stages
        implements `intermediates(code, noise, **rate_values) -> dict` with an "image" entry."""
        code = self.quantizer.dequantize(indices)
        values = {k: v[rate:rate + 1] for k, v in self.rate_constants().items()}
        named = getattr(self, "intermediates", None)
        return named(code, noise, **values) if named else {"code": code, "image": self.decode_code(code, noise, **values)}

    def count_decode(self, height: int, width: int) -> None:
        """One decode of a padded height x width image on meta tensors, for FLOP counting (edgecodec.flops)."""
        h, w = height // self.cfg.downsample, width // self.cfg.downsample
        idx = torch.zeros(1, self.cfg.num_rates, h, w, dtype=torch.long, device="meta")
        self.decode_graph(idx, torch.zeros(1, self.cfg.latent_channels, h, w, device="meta"), 0)

    def decode_side_parameters(self) -> int:
        return sum(p.numel() for m in self.decode_side_modules() for p in m.parameters())

    def stream_spec(self) -> StreamSpec:
        cfg, q = self.cfg, self.quantizer
        codebooks = [cb.detach().cpu().float().numpy() for cb in q.codebooks()]
        spec = StreamSpec(model=cfg.name, downsample=cfg.downsample, multiple=cfg.multiple,
                          latent_channels=cfg.latent_channels, codebook_size=cfg.codebook_size,
                          prior_counts=q.prior.cpu().numpy(), rates=self.rates)
        spec.fingerprint = compute_fingerprint(spec, codebooks)
        return spec


class DecodeGraph(nn.Module):
    """The exported unit of any family: (indices, noise, rate) -> image in [0, 1].

    One graph serves every rate: which VQ stages count and the model's rate constants are tables
    indexed by the rate input. Indices always carry every stage; unused ones are zeros."""

    def __init__(self, codec: CodecModel):
        super().__init__()
        self.codec = codec
        n = codec.cfg.num_rates
        with torch.no_grad():
            values = codec.rate_constants()
        self.register_buffer("stage_mask", rate_mask(torch.arange(n), n))
        self._rate_keys = list(values)
        for k, v in values.items():
            self.register_buffer(k, v.detach().float())

    def forward(self, indices: torch.Tensor, noise: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        code = self.codec.quantizer.dequantize_kept(indices, self.stage_mask[rate])
        return self.codec.decode_code(code, noise, **{k: getattr(self, k)[rate] for k in self._rate_keys})


class EncodeGraph(nn.Module):
    """The exported encoder of any family: (1, 3, Hp, Wp) image in [-1, 1] -> (1, S, h, w) int64
    indices of every VQ stage, the nearest-code searches included. The residual search is greedy,
    so a stream of rate r keeps the first r + 1 stages."""

    def __init__(self, codec: CodecModel):
        super().__init__()
        self.codec = codec

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.codec.quantizer.quantize(self.codec.encode_code(image), self.codec.cfg.num_rates)


def require_vq_stream(codec: CodecModel, what: str) -> None:
    """What is built on the core's VQ stream (bundles: the graph takes indices, noise and rate; distillation
    on the teacher's code) refuses, in one line, a model whose family codes its own stream."""
    if codec.coder != "vq":
        raise ModelError(f"{what} of {codec.family} models ({codec.cfg.name}) is not supported yet: their family "
                         "codes its own stream, which bundles do not carry so far; decode with the torch runtime")


# --- the registry ----------------------------------------------------------------------------------

def family_module(name: str) -> ModuleType:
    if name not in FAMILIES:
        raise ModelError(f"unknown model family '{name}' (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name])


def named_configs() -> dict[str, object]:
    """Every named model of every family: {name: config}."""
    out: dict[str, object] = {}
    for fam in FAMILIES:
        out.update(family_module(fam).CONFIGS)
    return out


def family_of(cfg) -> str:
    return type(cfg).family


def config_to_json(cfg) -> str:
    return json.dumps({"family": family_of(cfg), **json.loads(cfg.to_json())}, sort_keys=True)


def config_from_json(text: str):
    d = json.loads(text)
    fam = d.pop("family", DEFAULT_FAMILY)
    return family_module(fam).CONFIG.from_json(json.dumps(d))


def build_model(cfg, device: str | None = None) -> CodecModel:
    """Seeded random initialisation: the same weights (and fingerprint) on every run. On the "meta" device:
    the architecture only, for counting or for loading weights into (weights.load_file)."""
    model_cls = family_module(family_of(cfg)).MODEL
    if device == "meta":
        with torch.device("meta"):
            return model_cls(cfg).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = model_cls(cfg)
    return model.eval()


__all__ = ["FAMILIES", "CodecModel", "DecodeGraph", "EncodeGraph", "build_model", "config_from_json", "config_to_json",
           "family_module", "named_configs", "require_vq_stream"]
