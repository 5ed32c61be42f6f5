"""OneDC's four-pass y coding (compression_model.py: forward/decompress_four_part_prior), numpy only.

y (N channels at 1/16) is split into channel groups g0..g3 of N/4 channels and the 2x2 positions
p0=(0,0) p1=(0,1) p2=(1,0) p3=(1,1); pass k codes one position per group (PASS_POSITIONS[k][g]). Each
pass sums its four masked groups into one N/4-channel map, coded in C, H, W order under the scales the
prior gives before that pass; one rANS stream carries the passes in order. The prior is a callback,
prior(k, y_hat) -> (scales, means) float32 (1, N, h, w), so that no network framework is needed here:
pass 0 is y_prior_fusion's output (y_hat is zeros), pass k >= 1 the spatial prior on y_hat so far.

The arithmetic repeats OneDC's float32 steps (masking by multiplication, the pairwise group sums), so
y_hat is bit-identical to OneDC's, signed zeros included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np

from . import rans
from .gaussian import scale_indices

__all__ = ["PASS_POSITIONS", "PassRecord", "Prior", "pass_masks", "decode_y", "encode_y"]

# PASS_POSITIONS[k][g]: the 2x2 position (row, col) group g codes in pass k.
_P = ((0, 0), (0, 1), (1, 0), (1, 1))
PASS_POSITIONS = ((_P[0], _P[1], _P[2], _P[3]),
                  (_P[3], _P[2], _P[1], _P[0]),
                  (_P[2], _P[3], _P[0], _P[1]),
                  (_P[1], _P[0], _P[3], _P[2]))

Prior = Callable[[int, np.ndarray], Tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PassRecord:
    """What one pass coded, each (1, N/4, h, w) in coding order (for trace and tests)."""

    scales_r: np.ndarray  # float32: the scales of the coded positions
    scale_index: np.ndarray  # int32: their CDF indices (-1: not coded, the z-only variant)
    symbols: np.ndarray  # int32: the integer residuals round(y - means)


def pass_masks(N: int, h: int, w: int) -> List[np.ndarray]:
    """The four passes' boolean (N, h, w) masks; together they cover every element exactly once."""
    if N <= 0 or N % 4 or h <= 0 or w <= 0:
        raise ValueError(f"need N a positive multiple of 4 and a non-empty grid, got N={N} h={h} w={w}")
    rows = np.arange(h)[:, None] % 2
    cols = np.arange(w)[None, :] % 2
    masks = []
    for positions in PASS_POSITIONS:
        m = np.zeros((N, h, w), dtype=bool)
        for g, (r, c) in enumerate(positions):
            m[g * N // 4:(g + 1) * N // 4] = (rows == r) & (cols == c)
        masks.append(m)
    return masks


def _combine(x: np.ndarray) -> np.ndarray:
    """OneDC's combine_for_writing: the four channel groups summed as (g0 + g1) + (g2 + g3)."""
    g0, g1, g2, g3 = np.split(x, 4, axis=1)
    return (g0 + g1) + (g2 + g3)


def _run_prior(prior: Prior, k: int, y_hat: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    scales, means = prior(k, y_hat)
    for name, a in (("scales", scales), ("means", means)):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != y_hat.shape:
            raise ValueError(f"prior pass {k}: {name} must be a float32 array {y_hat.shape}, got "
                             f"{getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}")
    return scales, means


def decode_y(reader: Optional[rans.RansReader], prior: Prior, N: int, h: int, w: int,
             z_only: bool = False) -> Tuple[np.ndarray, List[PassRecord]]:
    """y_hat float32 (1, N, h, w) and the per-pass record. Reads all four passes, then reader.finish()
    checks the stream ended exactly (StreamError otherwise).

    z_only: OneDC's 0.0034 bpp model, which codes no y at all: every symbol is 0, y_hat is the masked
    means of each pass, and reader must be None.
    """
    if z_only != (reader is None):
        raise ValueError("pass a reader for a coded y, and reader=None exactly when z_only")
    masks = [m[None].astype(np.float32) for m in pass_masks(N, h, w)]
    y_hat = np.zeros((1, N, h, w), dtype=np.float32)
    record = []
    for k, mask in enumerate(masks):
        scales, means = _run_prior(prior, k, y_hat)
        scales_r = _combine(scales * mask)
        if z_only:
            index = np.full(scales_r.shape, -1, dtype=np.int32)
            symbols = np.zeros(scales_r.shape, dtype=np.int32)
        else:
            index = scale_indices(scales_r)
            symbols = reader.decode(index.ravel()).reshape(scales_r.shape)
        step = (np.tile(symbols.astype(np.float32), (1, 4, 1, 1)) + means) * mask
        y_hat = step if k == 0 else y_hat + step
        record.append(PassRecord(scales_r, index, symbols))
    if reader is not None:
        reader.finish()
    return y_hat, record


def encode_y(y: np.ndarray, prior: Prior, N: int, h: int, w: int) -> Tuple[bytes, np.ndarray, List[PassRecord]]:
    """The y-stream of y float32 (1, N, h, w), the y_hat the decoder will rebuild, and the record.
    The prior sees the encoder's y_hat so far, which equals the decoder's."""
    y = np.asarray(y)
    if y.dtype != np.float32 or y.shape != (1, N, h, w):
        raise ValueError(f"y must be float32 (1, {N}, {h}, {w}), got {y.dtype} {y.shape}")
    masks = [m[None].astype(np.float32) for m in pass_masks(N, h, w)]
    y_hat = np.zeros_like(y)
    record = []
    for k, mask in enumerate(masks):
        scales, means = _run_prior(prior, k, y_hat)
        means_hat = means * mask
        y_q = np.rint((y - means_hat) * mask)  # torch.round: half to even
        if not np.isfinite(y_q).all():
            raise ValueError(f"pass {k}: y - means is not finite")
        step = y_q + means_hat
        y_hat = step if k == 0 else y_hat + step
        scales_r = _combine(scales * mask)
        # OneDC clips what it hands the coder (int16) but keeps the unclipped y_hat; the two differ
        # only for residuals beyond +-30000, which no working model produces.
        symbols = np.clip(_combine(y_q), -rans.SYMBOL_LIMIT, rans.SYMBOL_LIMIT).astype(np.int32)
        record.append(PassRecord(scales_r, scale_indices(scales_r), symbols))
    stream = rans.encode(np.concatenate([r.symbols.ravel() for r in record]),
                         np.concatenate([r.scale_index.ravel() for r in record]))
    return stream, y_hat, record
