"""Portable decoder noise: numpy's PCG64 seeded by the stream, generated on the host.

Never inside a graph, never from torch's generator (which differs per device): every runtime on
every machine gets the same float32 tensor for the same stream, so outputs can be compared
tensor for tensor. tests/test_noise.py pins a digest so a numpy change would be caught.
"""

from __future__ import annotations

import numpy as np


def portable_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(int(seed)))
    return rng.standard_normal(shape, dtype=np.float32)
