"""The edge student family: the teacher's encoder and code, a decoder shaped for edge runtimes.

A student keeps everything a stream depends on (the teacher's encoder, codebooks, entropy prior,
rate table and geometry: its fingerprint is the teacher's), so every .edc either writes decodes with
the other. It replaces the teacher's three decode stages (latent decoder, one-step denoiser, pixel
decoder) with one merged network distilled from the teacher's own decodes (apps/distill.py):

    head (1/16):   concat(code, noise) -> 3x3 conv + per-rate bias -> residual blocks of 3x3 conv + ReLU,
                   each adding a 1x1 conv of its features' image mean ("pool" context)
    pixel (up):    per level: nearest x2 -> 3x3 conv + ReLU; last level: 3x3 conv to 3*s*s channels,
                   depth-to-space by s -> image

The shape follows TAESD's decoder (plain 3x3 conv + ReLU, no normalisation, no attention, nearest
upsampling), measured to gain most from INT8 on oneDNN. Nothing runs at full resolution but the
depth-to-space: the teacher's pixel decoder spends most of its FLOPs there. The pooled context gives
the head what the teacher's GroupNorms and attention see, the whole image (or tile), for almost no
FLOPs; students written before it (no `context` in their config) load without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ModelError
from ...quantizer import ResidualVQ
from ...rate import rate_table
from ...zoo import CodecModel
from ..diffo.autoencoder import Encoder
from ..diffo.codec import DiffoEncodeSide
from ..diffo.config import DIFFO, TINY, CodecConfig


@dataclass(frozen=True)
class EdgeConfig:
    family: ClassVar[str] = "edge"

    name: str
    teacher: CodecConfig  # encoder side, code and rate table; the student's streams are the teacher's
    teacher_name: str  # the named model it was distilled from (for people; the fingerprint decides)
    head_channels: int
    head_blocks: int
    widths: tuple[int, ...]  # channels after each x2 upsampling
    shuffle: int  # the last level emits 3 * shuffle**2 channels, moved to pixels by depth-to-space
    init_seed: int = 0
    context: str = ""  # "" or "pool": each head block adds a bias from the image's mean features

    @property
    def num_rates(self) -> int:
        return self.teacher.num_rates

    @property
    def downsample(self) -> int:
        return self.teacher.downsample

    @property
    def multiple(self) -> int:
        return self.teacher.multiple

    @property
    def latent_channels(self) -> int:
        return self.teacher.latent_channels

    @property
    def codebook_size(self) -> int:
        return self.teacher.codebook_size

    def check(self) -> None:
        if self.context not in ("", "pool"):
            raise ValueError(f"{self.name}: context '{self.context}' is not one of '' (none) or 'pool'")
        ups = 2 ** len(self.widths) * self.shuffle
        if ups != self.downsample:
            raise ValueError(f"{self.name}: {len(self.widths)} x2 levels and shuffle {self.shuffle} give "
                             f"x{ups}, the code is at 1/{self.downsample}")

    def to_json(self) -> str:
        d = asdict(self)
        d["teacher"] = json.loads(self.teacher.to_json())
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "EdgeConfig":
        d = json.loads(text)
        return cls(name=d["name"], teacher=CodecConfig.from_json(json.dumps(d["teacher"])),
                   teacher_name=d["teacher_name"], head_channels=int(d["head_channels"]),
                   head_blocks=int(d["head_blocks"]), widths=tuple(int(w) for w in d["widths"]),
                   shuffle=int(d["shuffle"]), init_seed=int(d.get("init_seed", 0)),
                   context=str(d.get("context", "")))


class _EncodeHalf(nn.Module):
    """The encode side of one of the teacher's autoencoders, under the teacher's module names."""

    def __init__(self, cfg, code_channels: int | None = None):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, code_channels or cfg.z_channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant_conv(self.encoder(x))


class _Block(nn.Module):
    def __init__(self, ch: int, context: str = ""):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.context = nn.Conv2d(ch, ch, 1) if context == "pool" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x))
        if self.context is not None:
            h = h + self.context(h.mean((2, 3), keepdim=True))
        return F.relu(x + self.conv2(h))


class _Head(nn.Module):
    """Everything at the code's resolution: code and noise in, features out."""

    def __init__(self, cfg: EdgeConfig):
        super().__init__()
        t = cfg.teacher
        self.conv_in = nn.Conv2d(t.code_dim + t.latent_channels, cfg.head_channels, 3, padding=1)
        self.blocks = nn.Sequential(*(_Block(cfg.head_channels, cfg.context) for _ in range(cfg.head_blocks)))

    def forward(self, code, noise, rate_bias):
        h = self.conv_in(torch.cat([code, noise], 1)) + rate_bias[:, :, None, None]
        return self.blocks(F.relu(h))


class _Upsampler(nn.Module):
    def __init__(self, cfg: EdgeConfig):
        super().__init__()
        chans = (cfg.head_channels, *cfg.widths)
        self.ups = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        self.conv_out = nn.Conv2d(chans[-1], 3 * cfg.shuffle**2, 3, padding=1)
        self.shuffle = cfg.shuffle

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for conv in self.ups:
            h = F.relu(conv(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return F.pixel_shuffle(self.conv_out(h), self.shuffle)


class EdgeStudent(DiffoEncodeSide, CodecModel):
    family = "edge"
    stages = {"latent": ("head",), "pixel": ("upsampler",)}
    float_layers = {}  # plain conv + ReLU: every layer but the last (structural) runs INT8, the pooled
    # context included (kept in float, measured worse: ONNX Runtime PTQ drop 0.29 dB against 0.19)

    def __init__(self, cfg: EdgeConfig):
        super().__init__()
        cfg.check()
        t = cfg.teacher
        self.cfg = cfg
        self.pixel_vq = _EncodeHalf(t.pixel)
        self.latent_vq = _EncodeHalf(t.latent, code_channels=t.code_dim)
        self.latent_vq.quantize = ResidualVQ(t.codebook_size, t.code_dim, t.residual_stages)
        self.rates = rate_table(t.rate.sigma_max, t.rate.decay, cfg.num_rates, t.rate.t_max)
        self.rate_bias = nn.Parameter(torch.zeros(cfg.num_rates, cfg.head_channels))
        self.head = _Head(cfg)
        self.upsampler = _Upsampler(cfg)
        # training only: the student's 1/16 features mapped to the teacher's denoised latent x0, so a
        # feature loss can reach the head directly; not part of the decode graph
        self.x0_probe = nn.Conv2d(cfg.head_channels, t.latent_channels, 1)

    def rate_constants(self) -> dict[str, torch.Tensor]:
        return {"rate_bias": self.rate_bias}

    def features(self, code, noise, rate_bias) -> torch.Tensor:
        return self.head(code, noise, rate_bias)

    def decode_code(self, code, noise, rate_bias) -> torch.Tensor:
        return self.render(self.features(code, noise, rate_bias))

    def render(self, h: torch.Tensor) -> torch.Tensor:
        return ((self.upsampler(h) + 1.0) * 0.5).clamp(0.0, 1.0)

    def decode_side_modules(self) -> list[nn.Module]:
        return [self.quantizer, self.head, self.upsampler]

    def decode_side_parameters(self) -> int:
        return super().decode_side_parameters() + self.rate_bias.numel()

    ENCODE_SIDE = ("pixel_vq.", "latent_vq.")

    def adopt(self, teacher: CodecModel) -> None:
        own, theirs = self.state_dict(), teacher.state_dict()
        keys = [k for k in own if k.startswith(self.ENCODE_SIDE)]
        missing = [k for k in keys if k not in theirs or theirs[k].shape != own[k].shape]
        if missing:
            raise ModelError(f"{teacher.cfg.name} cannot teach {self.cfg.name}: it lacks {missing[0]} "
                             f"(or its shape differs)")
        self.load_state_dict({k: theirs[k] for k in keys}, strict=False)

    def decoder_state(self) -> dict[str, torch.Tensor]:
        """What distillation trains (the rest is the teacher's and stays frozen)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.ENCODE_SIDE)}


def student_of(teacher_name: str, teacher: CodecConfig, name: str, **shape) -> EdgeConfig:
    return EdgeConfig(name=name, teacher=teacher, teacher_name=teacher_name, **shape)


# presets; `distill --student PRESET` takes the shape from these, the teacher from --teacher
PRESETS = {
    # pixel part 1.87 GFLOPs and whole graph ~3.0 GFLOPs at 512x768 (tiny: 19.8 / 23.8). The pooled
    # context stands in for the teacher's GroupNorm and attention, which see the whole image: +0.27 to
    # +0.42 dB over the same shape without it (2,000-step distils), at no measurable cost
    "tiny-edge": dict(head_channels=64, head_blocks=4, widths=(48, 24, 16), shuffle=2, context="pool"),
    # for DiffO-size teachers: ~130x fewer pixel GFLOPs than DiffO's pixel decoder (timed, never trained:
    # no trained DiffO weights here, so the context stays off until a distillation measures it)
    "diffo-edge": dict(head_channels=256, head_blocks=4, widths=(128, 64, 32), shuffle=2),
}

CONFIG = EdgeConfig
MODEL = EdgeStudent
CONFIGS = {
    "tiny-edge": student_of("tiny", TINY, "tiny-edge", **PRESETS["tiny-edge"]),
    "diffo-edge": student_of("diffo", DIFFO, "diffo-edge", **PRESETS["diffo-edge"]),
}

__all__ = ["CONFIG", "CONFIGS", "MODEL", "PRESETS", "EdgeConfig", "EdgeStudent", "student_of"]
