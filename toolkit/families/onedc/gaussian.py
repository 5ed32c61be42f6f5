"""OneDC's Gaussian-conditional entropy model: the scale table, scale -> CDF index, and the 256 CDFs.

Written from the facts of OneDC's `GaussianEncoder` (src/modules/entropy/entropy_models.py) and
CompressAI's `pmf_to_quantized_cdf` (src/cpp/ops/ops.cpp), numpy + `math` only.

Bit-exactness. OneDC builds everything in torch float32; the float32 steps are redone here one IEEE
operation at a time. The transcendental functions (exp, erf, log) are evaluated in float64 and rounded
once to float32, i.e. correctly rounded, whereas torch uses SLEEF (<= 1 ulp):
* scale table: torch's exp rounds entry 108 one ulp lower (1.6306524 vs 1.6306525); no CDF changes.
* CDFs: about 0.3 % of the float32 erf values differ by one ulp, yet all 256 CDFs come out identical to
  OneDC's (checked against the reference fixture).
* scale indices: torch's float32 log differs from the correctly rounded one by an ulp for ~6 % of
  inputs; the index can then differ only if (ln s - ln .11)/step lands within ~1e-5 of an integer:
  0 of 2M random scales and 0 of the fixture's scales differed. Streams from OneDC therefore decode
  here unless a scale sits on a bin edge to ~1e-7 relative, which no platform-independent code can
  rule out.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

__all__ = ["SCALE_MIN", "SCALE_MAX", "SCALE_LEVELS", "LOG_SCALE_MIN", "LOG_SCALE_STEP", "PRECISION",
           "Cdfs", "scale_table", "scale_indices", "quantize_pmf", "build_cdfs"]

SCALE_MIN = 0.11
SCALE_MAX = 64.0
SCALE_LEVELS = 256
# Python floats, as OneDC keeps them; torch rounds them to float32 when they meet a float32 tensor.
LOG_SCALE_MIN = math.log(SCALE_MIN)
LOG_SCALE_STEP = (math.log(SCALE_MAX) - LOG_SCALE_MIN) / (SCALE_LEVELS - 1)
PRECISION = 16  # CDF precision in bits
_MAX_CENTER = 50  # the pmf covers -c..c with c <= 50
_COVERAGE = 0.9999  # c = the smallest i in [2, 50] with Phi(i / s) > .9999

_f32 = np.float32
_erf = np.vectorize(math.erf, otypes=[np.float64])


class Cdfs(NamedTuple):
    """The coder's tables, laid out as OneDC hands them to its rANS coder (and as cdf.npz stores them)."""

    quantized_cdf: np.ndarray  # int32 (256, 103): row i holds cdf_length[i] entries, then zeros
    cdf_length: np.ndarray  # int32 (256,): 2c + 3 = pmf -c..c, the tail (escape) symbol, the end
    offset: np.ndarray  # int32 (256,): -c, the value of symbol 0


def _fma32(a, b, c) -> np.ndarray:
    """float32 a*b + c rounded once (the product of two float32 and the sum are exact in float64 here)."""
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(_f32)


@functools.cache
def scale_table() -> np.ndarray:
    """exp(linspace(ln .11, ln 64, 256)) in float32, as torch computes it (see the module doc for the
    one-ulp difference at entry 108)."""
    start, end = _f32(LOG_SCALE_MIN), _f32(math.log(SCALE_MAX))
    step = _f32((end - start) / _f32(SCALE_LEVELS - 1))
    i = np.arange(SCALE_LEVELS)
    half = SCALE_LEVELS // 2
    # torch's linspace: the first half counts up from start, the second down from end, each one fused
    # multiply-add (matches torch bit for bit).
    lin = np.where(i < half, _fma32(step, i, start), _fma32(-step, SCALE_LEVELS - 1 - i, end))
    table = np.exp(lin.astype(np.float64)).astype(_f32)
    table.flags.writeable = False
    return table


def scale_indices(scales: np.ndarray) -> np.ndarray:
    """CDF index of each scale: int(clamp((ln max(s, 1e-5) - ln .11) / step, 0, 255)) in float32."""
    s = np.asarray(scales)
    if s.dtype != np.float32:
        raise ValueError(f"scales must be float32 (the prior's output), got {s.dtype}")
    if np.isnan(s).any():
        raise ValueError("scales contain NaN")
    s = np.maximum(s, _f32(1e-5))
    log = np.log(s.astype(np.float64)).astype(_f32)
    idx = (log - _f32(LOG_SCALE_MIN)) / _f32(LOG_SCALE_STEP)
    return np.clip(idx, _f32(0), _f32(SCALE_LEVELS - 1)).astype(np.int32)


def _normal_cdf(values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """torch.distributions.Normal(0, s).cdf(v) = 0.5 * (1 + erf(v * (1/s) / sqrt 2)), float32 steps."""
    x = values * (_f32(1) / scales)
    x = x / _f32(math.sqrt(2))
    return _f32(0.5) * (_f32(1) + _erf(x).astype(_f32))


def quantize_pmf(pmf: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """CompressAI's pmf -> quantized CDF (len(pmf) + 1 entries, 0 .. 2**precision, every symbol >= 1).

    Each probability is scaled (float32, exact) and rounded half away from zero; the counts are
    rescaled to the total by integer floor division and accumulated; then every empty symbol, in
    order, takes one unit from the first symbol with the smallest count above one, shifting the CDF
    entries between the two.
    """
    total_target = 1 << precision
    p = np.asarray(pmf, dtype=_f32) * _f32(total_target)
    counts = [int(v) for v in np.floor(p.astype(np.float64) + 0.5)]
    total = sum(counts)
    cdf = [0]
    for n in counts:
        cdf.append(cdf[-1] + total_target * n // total)
    cdf[-1] = total_target
    for i in range(len(cdf) - 1):
        if cdf[i] != cdf[i + 1]:
            continue
        freqs = [cdf[j + 1] - cdf[j] for j in range(len(cdf) - 1)]
        donor = min((f, j) for j, f in enumerate(freqs) if f > 1)[1]
        if donor < i:
            for j in range(donor + 1, i + 1):
                cdf[j] -= 1
        else:
            for j in range(i + 1, donor + 1):
                cdf[j] += 1
    return np.array(cdf, dtype=np.int32)


@functools.cache
def build_cdfs() -> Cdfs:
    """OneDC's 256 quantized CDFs (weight-independent, built once): for scale s of the table, the pmf of
    the integers -c..c under N(0, s) plus the two-sided tail mass as the escape symbol."""
    table = scale_table()
    centers = np.full(SCALE_LEVELS, _MAX_CENTER, dtype=np.int32)
    for i in range(_MAX_CENTER, 1, -1):  # the last i that passes is the smallest
        covered = _normal_cdf(np.full(SCALE_LEVELS, i, dtype=_f32), table) > _f32(_COVERAGE)
        centers[covered] = i
    width = 2 * int(centers.max()) + 1
    samples = (np.arange(width)[None, :] - centers[:, None]).astype(_f32)
    upper = _normal_cdf(samples + _f32(0.5), table[:, None])
    lower = _normal_cdf(samples - _f32(0.5), table[:, None])
    pmf = upper - lower
    tail = _f32(2) * lower[:, 0]

    quantized = np.zeros((SCALE_LEVELS, width + 2), dtype=np.int32)
    lengths = 2 * centers + 3
    for i in range(SCALE_LEVELS):
        n = 2 * int(centers[i]) + 1
        quantized[i, : n + 2] = quantize_pmf(np.append(pmf[i, :n], tail[i]))
    offset = -centers
    for a in (quantized, lengths, offset):
        a.flags.writeable = False
    return Cdfs(quantized, lengths, offset)
