"""Encoding an image to .edc bytes (needs torch: the encoder is a network)."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from . import bitstream
from .codec import Codec
from .frames import to_model_input


def encode_image(codec: Codec, rgb: np.ndarray, rate: int, seed: int | None = None) -> bytes:
    """H x W x 3 uint8 -> stream. Without a seed, one is derived from the indices, so the same image
    always encodes to the same bytes."""
    if not 0 <= rate < codec.cfg.num_rates:
        from .errors import EdgecodecError

        raise EdgecodecError(f"rate {rate} is not offered by model {codec.cfg.name} "
                             f"(rates 0..{codec.cfg.num_rates - 1})")
    spec = codec.stream_spec()
    height, width = rgb.shape[:2]
    x = torch.from_numpy(to_model_input(rgb, spec.multiple))
    device = next(codec.parameters()).device
    indices = codec.encode_indices(x.to(device), rate).cpu().numpy().astype(np.int64)
    if seed is None:
        seed = zlib.crc32(indices.tobytes())
    return bitstream.write(spec, indices, height, width, seed)
