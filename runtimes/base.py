"""The Decoder interface every backend implements, and the host-side half they all share.

Host side (numpy only, identical on every machine): parse + entropy-decode the stream, draw the
portable noise, tile sizes its graphs do not run (tiling.py), crop and quantize the graph output.
A backend only supplies `run_graph` and `encode_indices` on the sizes it has (`grid_for`), so two
backends can be compared tensor for tensor on the same inputs.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

import numpy as np

from edgecodec import bitstream
from edgecodec.errors import RuntimeUnavailable
from edgecodec.frames import to_image
from edgecodec.noise import portable_noise
from edgecodec.spec import StreamSpec

from . import tiling


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
        """name, source, trained and seeds (its default seed-search candidates) of the model decoded
        (eval's `model` key)."""

    @property
    def can_encode(self) -> bool:
        return True

    @abstractmethod
    def encode_indices(self, image: np.ndarray) -> np.ndarray:
        """(1, 3, Hp, Wp) float32 image in [-1, 1] (frames.to_model_input) -> (1, S, h, w) int64
        indices of every VQ stage: the model's encoder, on this runtime (coding.encode_with)."""

    def encode_payload(self, rgb: np.ndarray) -> bytes:
        """H x W x 3 uint8 -> the payload of a model whose family codes its own stream (spec.coder "family")."""
        raise RuntimeUnavailable(f"runtime {self.name} cannot encode {self.spec.model}'s streams: use torch")

    @abstractmethod
    def grid_for(self, h: int, w: int) -> tiling.Grid | None:
        """How an h x w latent grid is cut into tiles this runtime's graphs run; None: in one piece."""

    def tiles(self, height: int, width: int) -> int:
        """Graph calls one decode of a height x width image makes (1: in one piece)."""
        grid = self.grid_for(*self.spec.latent_size(height, width))
        return 1 if grid is None else grid.count

    def all_stages(self, indices: np.ndarray) -> np.ndarray:
        """(1, rate+1, h, w) -> (1, num_rates, h, w): unused stages zero, as the one-graph-for-every-rate
        decode graphs take them (they mask by the rate input)."""
        full = np.zeros((1, self.spec.num_rates) + indices.shape[2:], np.int64)
        full[:, : indices.shape[1]] = indices
        return full

    def decode_latent(self, indices: np.ndarray, noise: np.ndarray, rate: int, height: int, width: int) -> np.ndarray:
        """Indices and noise of a whole image -> its H x W x 3 uint8 decode, tile by tile if needed.
        Sets last_timings' graph_ms (graph calls) and post_ms (blend, crop, quantize)."""
        graph_s = 0.0

        def run(idx: np.ndarray, eps: np.ndarray) -> np.ndarray:
            nonlocal graph_s
            t = time.perf_counter()
            out = self.run_graph(idx, eps, rate)
            graph_s += time.perf_counter() - t
            return out

        t0 = time.perf_counter()
        grid = self.grid_for(*indices.shape[2:])
        if grid is None:
            image = to_image(run(indices, noise), height, width)
        else:
            image = tiling.decode(run, indices, noise, grid, self.spec.downsample, height, width)
        total = time.perf_counter() - t0
        self.last_timings.update(graph_ms=graph_s * 1e3, post_ms=(total - graph_s) * 1e3)
        return image

    def encode_pixels(self, image: np.ndarray) -> np.ndarray:
        """`encode_indices` for an image of any size, tile by tile if needed."""
        ds = self.spec.downsample
        grid = self.grid_for(image.shape[2] // ds, image.shape[3] // ds)
        return self.encode_indices(image) if grid is None else tiling.encode(self.encode_indices, image, grid, ds)

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
        self.last_timings = {"parse_ms": (t1 - t0) * 1e3, "noise_ms": (t2 - t1) * 1e3}
        return self.decode_latent(parsed.indices, noise, parsed.rate, parsed.header.height, parsed.header.width)
