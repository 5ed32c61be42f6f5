"""Benchmark inputs that need no encoder and no torch: valid .edc streams drawn from a model's prior.

Indices are drawn per VQ stage from the stage's prior (`spec.prior_counts`), so the entropy coder
sees statistics like real content and the parse stage costs what it costs on real streams; the
graph's cost does not depend on the index values. Any model with a StreamSpec can be timed this
way, random-weight ones included.
"""

from __future__ import annotations

import numpy as np

from edgecodec import bitstream
from edgecodec.spec import StreamSpec


def synthetic_indices(spec: StreamSpec, height: int, width: int, rate: int, seed: int = 0) -> np.ndarray:
    """(1, rate + 1, h, w) int64 indices for a height x width image, stage s drawn from prior row s."""
    if not 0 <= rate < spec.num_rates:
        raise ValueError(f"rate {rate} is not offered by model {spec.model} (rates 0..{spec.num_rates - 1})")
    h, w = spec.latent_size(height, width)
    rng = np.random.Generator(np.random.PCG64(seed))
    stages = []
    for counts in spec.prior_counts[: rate + 1]:
        counts = counts.astype(np.float64)
        total = counts.sum()
        p = counts / total if total > 0 else None  # an empty prior row codes as uniform
        stages.append(rng.choice(spec.codebook_size, size=(h, w), p=p))
    return np.stack(stages)[None].astype(np.int64)


def synthetic_stream(spec: StreamSpec, height: int, width: int, rate: int, seed: int = 0) -> bytes:
    """A valid .edc stream for a height x width image at `rate`, with `seed` as its noise seed."""
    indices = synthetic_indices(spec, height, width, rate, seed)
    return bitstream.write(spec, indices, height, width, seed)
