"""Encoding an image to .edc bytes: with any runtime that has the model's encoder (`encode_with`:
torch, or a bundle's encode graph on an install without torch), tile by tile where the image is
larger than the runtime's graphs; or with a torch model in one piece (`encode_image`, for images
the size of a graph: calibration, tests).

The stream carries its noise seed, so the encoder may choose it: `seeds > 1` decodes the code
with that many candidate seeds and keeps the one closest to the original (seed search: quality
at no extra bytes). Candidates are derived from the indices, so encoding stays deterministic.
"""

from __future__ import annotations

import zlib
from typing import Callable

import numpy as np

from . import bitstream
from .errors import EdgecodecError
from .frames import to_image, to_model_input
from .noise import portable_noise
from .spec import StreamSpec


def candidate_seeds(indices: np.ndarray, count: int) -> list[int]:
    """The first is the seed a plain encode stores (crc32 of the indices); the rest chain from it."""
    base = zlib.crc32(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    return [base] + [zlib.crc32(k.to_bytes(4, "little"), base) for k in range(1, count)]


def encode_image(codec, rgb: np.ndarray, rate: int, seed: int | None = None, seeds: int = 1) -> bytes:
    """H x W x 3 uint8 -> stream, with a torch model (zoo.CodecModel). Without a seed, the best of
    `seeds` candidate seeds is stored."""
    import torch

    spec = codec.stream_spec()
    _check(spec, rate, seed, seeds)
    device = next(codec.parameters()).device
    x = torch.from_numpy(to_model_input(rgb, spec.multiple)).to(device)
    with torch.no_grad():
        indices = codec.encode_indices(x, rate).cpu().numpy().astype(np.int64)

    def decode(idx: np.ndarray, noise: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = codec.decode_graph(torch.from_numpy(idx).to(device), torch.from_numpy(noise).to(device), rate)
        return to_image(out.cpu().numpy(), *rgb.shape[:2])

    return _write(spec, indices, rgb, rate, seed, seeds, decode)


def encode_with(runtime, rgb: np.ndarray, rate: int, seed: int | None = None, seeds: int = 1) -> bytes:
    """The same stream from a runtime (runtimes.Decoder): its encoder for the indices and, for the
    seed search, its own decode graph, so the seed is chosen for the decoder that will run."""
    spec = runtime.spec
    _check(spec, rate, seed, seeds)
    indices = runtime.encode_pixels(to_model_input(rgb, spec.multiple))[:, : rate + 1]
    return _write(spec, np.ascontiguousarray(indices, np.int64), rgb, rate, seed, seeds,
                  lambda idx, noise: runtime.decode_latent(idx, noise, rate, *rgb.shape[:2]))


def _check(spec: StreamSpec, rate: int, seed: int | None, seeds: int) -> None:
    if not 0 <= rate < spec.num_rates:
        raise EdgecodecError(f"rate {rate} is not offered by model {spec.model} (rates 0..{spec.num_rates - 1})")
    if seeds < 1:
        raise EdgecodecError(f"--seeds must be at least 1, got {seeds}")
    if seed is not None and seeds > 1:
        raise EdgecodecError("give either a fixed --seed or a seed search (--seeds K), not both")


def _write(spec: StreamSpec, indices: np.ndarray, rgb: np.ndarray, rate: int, seed: int | None, seeds: int,
           decode: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> bytes:
    """`decode(indices, noise)` -> the H x W x 3 uint8 image a decoder would show (for the seed search)."""
    height, width = rgb.shape[:2]
    if seed is None:
        seed = _search(spec, indices, rgb, candidate_seeds(indices, seeds), decode)
    return bitstream.write(spec, indices, height, width, seed)


def _search(spec: StreamSpec, indices: np.ndarray, rgb: np.ndarray, seeds: list[int], decode) -> int:
    """The candidate whose 8-bit decode has the smallest squared error (the first on ties)."""
    if len(seeds) == 1:
        return seeds[0]
    shape = (1, spec.latent_channels) + indices.shape[2:]
    target = rgb.astype(np.int32)
    errors = []
    for seed in seeds:
        diff = decode(indices, portable_noise(seed, shape)).astype(np.int32) - target
        errors.append(int((diff * diff).sum()))
    return seeds[int(np.argmin(errors))]
