"""The Decoder interface every backend implements, and the host-side half they all share.

Host side (numpy only, identical on every machine): parse + entropy-decode the stream, draw the
portable noise, crop and quantize the graph output. A backend only supplies `run_graph`, so two
backends can be compared tensor for tensor on the same inputs.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecodec import bitstream
from edgecodec.frames import to_image
from edgecodec.noise import portable_noise
from edgecodec.spec import StreamSpec


@dataclass
class RuntimeInfo:
    """What a decoder really runs on, read back from the runtime, never just what was asked for."""

    backend: str
    device: str
    precision: str
    providers: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


class Decoder(ABC):
    """Decodes .edc bytes to an H x W x 3 uint8 image."""

    name: str = "?"

    def __init__(self, spec: StreamSpec):
        self.spec = spec
        self.last_timings: dict[str, float] = {}

    @abstractmethod
    def run_graph(self, indices: np.ndarray, noise: np.ndarray, rate: int) -> np.ndarray:
        """(1, rate+1, h, w) int64 indices and (1, C, h, w) float32 noise -> (1, 3, Hp, Wp) in [0, 1]."""

    @property
    @abstractmethod
    def info(self) -> RuntimeInfo:
        """Backend, device and precision actually in use."""

    @property
    @abstractmethod
    def model(self) -> dict:
        """name, source and trained of the model decoded (eval's `model` key)."""

    @property
    def can_encode(self) -> bool:
        return True

    @abstractmethod
    def encode_indices(self, image: np.ndarray) -> np.ndarray:
        """(1, 3, Hp, Wp) float32 image in [-1, 1] (frames.to_model_input) -> (1, S, h, w) int64
        indices of every VQ stage: the model's encoder, on this runtime (coding.encode_with)."""

    def parse(self, data: bytes) -> bitstream.ParsedStream:
        return bitstream.parse(data, self.spec)

    def noise_for(self, parsed: bitstream.ParsedStream) -> np.ndarray:
        _, _, h, w = parsed.indices.shape
        return portable_noise(parsed.header.seed, (1, self.spec.latent_channels, h, w))

    def decode(self, data: bytes) -> np.ndarray:
        t0 = time.perf_counter()
        parsed = self.parse(data)
        t1 = time.perf_counter()
        noise = self.noise_for(parsed)
        t2 = time.perf_counter()
        out = self.run_graph(parsed.indices, noise, parsed.rate)
        t3 = time.perf_counter()
        image = to_image(out, parsed.header.height, parsed.header.width)
        t4 = time.perf_counter()
        self.last_timings = {"parse_ms": (t1 - t0) * 1e3, "noise_ms": (t2 - t1) * 1e3,
                             "graph_ms": (t3 - t2) * 1e3, "post_ms": (t4 - t3) * 1e3}
        return image
