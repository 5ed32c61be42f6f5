"""Encoding an image to .edc bytes: with any runtime that has the model's encoder (`encode_with`:
torch, or a bundle's encode graph on an install without torch), tile by tile where the image is
larger than the runtime's graphs; or with a torch model in one piece (`encode_image`, for images
the size of a graph: calibration, tests).

The stream carries its noise seed, so the encoder may choose it: `seeds > 1` decodes the code
with that many candidate seeds and keeps the one closest to the original (seed search: quality
at no extra bytes). Candidates are derived from the indices, so encoding stays deterministic.

Several rates of one image cost one encoder pass (`encode_rates`): the residual search is greedy,
so rate r's indices are the first r + 1 stages of the full search. A seed search keeps the decode
of the seed it chose (`Encoded.image`), so a caller measuring the same runtime need not decode again.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Iterable

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


@dataclass
class Encoded:
    """One rate's stream, and its decode by the encoding runtime where the seed search made one."""

    data: bytes
    image: np.ndarray | None = None  # H x W x 3 uint8


def encode_image(codec, rgb: np.ndarray, rate: int, seed: int | None = None, seeds: int = 1) -> bytes:
    """H x W x 3 uint8 -> stream, with a torch model (zoo.CodecModel). Without a seed, the best of
    `seeds` candidate seeds is stored."""
    return encode_image_rates(codec, rgb, [rate], seed, seeds)[rate].data


def encode_image_rates(codec, rgb: np.ndarray, rates: Iterable[int], seed: int | None = None,
                       seeds: int = 1) -> dict[int, Encoded]:
    """`encode_image` for several rates of one image, with one encoder pass."""
    import torch

    spec = codec.stream_spec()
    rates = _check_all(spec, rates, seed, seeds)
    device = next(codec.parameters()).device
    x = torch.from_numpy(to_model_input(rgb, spec.multiple)).to(device)
    with torch.no_grad():
        top = codec.encode_indices(x, max(rates)).cpu().numpy().astype(np.int64)

    def decode(rate: int):
        def run(idx: np.ndarray, noise: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = codec.decode_graph(torch.from_numpy(idx).to(device), torch.from_numpy(noise).to(device), rate)
            return to_image(out.cpu().numpy(), *rgb.shape[:2])
        return run

    return {rate: _write(spec, top[:, : rate + 1], rgb, rate, seed, seeds, decode(rate)) for rate in rates}


def encode_with(runtime, rgb: np.ndarray, rate: int, seed: int | None = None, seeds: int = 1) -> bytes:
    """The same stream from a runtime (runtimes.Decoder): its encoder for the indices and, for the
    seed search, its own decode graph, so the seed is chosen for the decoder that will run."""
    return encode_rates(runtime, rgb, [rate], seed, seeds)[rate].data


def encode_rates(runtime, rgb: np.ndarray, rates: Iterable[int], seed: int | None = None,
                 seeds: int = 1) -> dict[int, Encoded]:
    """`encode_with` for several rates of one image, with one encoder pass."""
    spec = runtime.spec
    rates = _check_all(spec, rates, seed, seeds)
    if spec.coder != "vq":  # the family codes its own payload; no noise, so no seed to choose
        if seeds > 1 or seed is not None:
            raise EdgecodecError(f"model {spec.model} draws no noise at decode time: --seed/--seeds do not apply")
        return {rate: Encoded(bitstream.wrap(spec, runtime.encode_payload(rgb), *rgb.shape[:2])) for rate in rates}
    top = runtime.encode_pixels(to_model_input(rgb, spec.multiple))

    def decode(rate: int):
        return lambda idx, noise: runtime.decode_latent(idx, noise, rate, *rgb.shape[:2])

    return {rate: _write(spec, top[:, : rate + 1], rgb, rate, seed, seeds, decode(rate)) for rate in rates}


def _check_all(spec: StreamSpec, rates: Iterable[int], seed: int | None, seeds: int) -> list[int]:
    rates = list(rates)
    if not rates:
        raise EdgecodecError("no rate to encode")
    for rate in rates:
        _check(spec, rate, seed, seeds)
    return rates


def _check(spec: StreamSpec, rate: int, seed: int | None, seeds: int) -> None:
    if not 0 <= rate < spec.num_rates:
        raise EdgecodecError(f"rate {rate} is not offered by model {spec.model} (rates 0..{spec.num_rates - 1})")
    if seeds < 1:
        raise EdgecodecError(f"--seeds must be at least 1, got {seeds}")
    if seed is not None and seeds > 1:
        raise EdgecodecError("give either a fixed --seed or a seed search (--seeds K), not both")


def _write(spec: StreamSpec, indices: np.ndarray, rgb: np.ndarray, rate: int, seed: int | None, seeds: int,
           decode: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Encoded:
    """`decode(indices, noise)` -> the H x W x 3 uint8 image a decoder would show (for the seed search)."""
    height, width = rgb.shape[:2]
    indices = np.ascontiguousarray(indices, np.int64)
    image = None
    if seed is None:
        seed, image = _search(spec, indices, rgb, candidate_seeds(indices, seeds), decode)
    return Encoded(bitstream.write(spec, indices, height, width, seed), image)


def _search(spec: StreamSpec, indices: np.ndarray, rgb: np.ndarray, seeds: list[int],
            decode) -> tuple[int, np.ndarray | None]:
    """The candidate whose 8-bit decode has the smallest squared error (the first on ties), and that
    decode (None when there was nothing to search)."""
    if len(seeds) == 1:
        return seeds[0], None
    shape = (1, spec.latent_channels) + indices.shape[2:]
    target = rgb.astype(np.int32)
    best = None
    for seed in seeds:
        image = decode(indices, portable_noise(seed, shape))
        diff = image.astype(np.int32) - target
        error = int((diff * diff).sum())
        if best is None or error < best[0]:
            best = (error, seed, image)
    return best[1], best[2]
