"""What a stream depends on, in a form every runtime can hold without torch.

A StreamSpec is cut from a codec (codebooks, entropy prior, rate table, geometry) and written into
every bundle manifest. Its fingerprint goes into each .edc header: a decoder refuses streams whose
fingerprint differs. Decoder weights are deliberately not part of it, so a distilled or quantized
decoder that keeps the codebooks reads the same streams.

`coder` says who reads the payload. "vq": the core's static-prior rANS of VQ indices (below), the
graph taking indices, noise and rate. "family": the model's family decodes its own payload (OneDC:
an FSQ z code and a Gaussian-conditional y code whose priors are networks), so the spec holds no
prior; `container` then names the family's own file format, which a decoder given the model reads
too (such files carry no fingerprint).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from .entropy import StaticModel, quantize_pmf
from .rate import RatePoint, table_from_json, table_to_json

FINGERPRINT_BYTES = 8
CODERS = ("vq", "family")


@dataclass
class StreamSpec:
    model: str
    downsample: int  # pixels per latent cell along each axis (16)
    multiple: int  # images are padded to this multiple
    latent_channels: int  # channels of the noise tensor
    codebook_size: int
    prior_counts: np.ndarray  # (num_rates, codebook_size) index counts, one row per VQ stage
    rates: list[RatePoint]
    fingerprint: bytes = b""
    coder: str = "vq"  # "vq" | "family" (module docstring)
    container: str | None = None  # the family's own file format, where it has one
    _models: list[StaticModel] = field(default_factory=list, repr=False)

    def __post_init__(self):
        if self.coder not in CODERS:
            raise ValueError(f"unknown stream coder {self.coder!r} (known: {', '.join(CODERS)})")
        self.prior_counts = np.asarray(self.prior_counts, dtype=np.int64)
        if self.coder != "vq":
            return
        if self.prior_counts.shape != (len(self.rates), self.codebook_size):
            raise ValueError(f"prior shape {self.prior_counts.shape} does not match "
                             f"{len(self.rates)} stages x {self.codebook_size} codes")
        self._models = [StaticModel(quantize_pmf(row)) for row in self.prior_counts]

    @property
    def num_rates(self) -> int:
        return len(self.rates)

    def entropy_models(self, rate: int) -> list[StaticModel]:
        return self._models[: rate + 1]

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        hp = -(-height // self.multiple) * self.multiple
        wp = -(-width // self.multiple) * self.multiple
        return hp // self.downsample, wp // self.downsample

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "downsample": self.downsample,
            "multiple": self.multiple,
            "latent_channels": self.latent_channels,
            "codebook_size": self.codebook_size,
            "prior_counts": self.prior_counts.tolist(),
            "rates": table_to_json(self.rates),
            "fingerprint": self.fingerprint.hex(),
            **({"coder": self.coder, "container": self.container} if self.coder != "vq" else {}),
        }

    @classmethod
    def from_json(cls, d: dict) -> "StreamSpec":
        return cls(model=d["model"], downsample=int(d["downsample"]), multiple=int(d["multiple"]),
                   latent_channels=int(d["latent_channels"]), codebook_size=int(d["codebook_size"]),
                   prior_counts=np.asarray(d["prior_counts"], np.int64), rates=table_from_json(d["rates"]),
                   fingerprint=bytes.fromhex(d["fingerprint"]), coder=d.get("coder", "vq"),
                   container=d.get("container"))


def compute_fingerprint(spec: StreamSpec, codebooks: list[np.ndarray]) -> bytes:
    """Hash of everything a stream's meaning depends on: codebooks, prior, rate table, geometry."""
    h = hashlib.sha256(b"edgecodec-stream-v1")
    geometry = {k: v for k, v in spec.to_json().items() if k not in ("fingerprint", "model", "prior_counts")}
    h.update(json.dumps(geometry, sort_keys=True).encode())
    h.update(np.ascontiguousarray(spec.prior_counts, dtype="<i8").tobytes())
    for cb in codebooks:
        h.update(np.ascontiguousarray(cb, dtype="<f4").tobytes())
    return h.digest()[:FINGERPRINT_BYTES]
