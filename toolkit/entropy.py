"""Static-prior entropy coding of vector-quantizer indices (rANS, numpy only).

Why this is hand-written
------------------------
The payload of a ``.edc`` stream has to be decodable on any edge device with
nothing but CPython and numpy.  The library alternatives (``constriction``,
``torchac``, CompressAI's ``ryg_rans`` bindings, ...) all ship compiled wheels
or need torch, which we cannot rely on there.  The coder below is small enough
to be written out and tested in full.

The coder
---------
A byte-wise renormalising range-ANS coder after Fabian Giesen's ``rans_byte.h``:

* the state ``x`` is a 32-bit unsigned integer (held in a Python ``int``) kept
  in the interval ``[RANS_L, RANS_L << 8)`` with ``RANS_L = 2**23``;
* probabilities are static frequency tables quantized to ``PRECISION_BITS = 12``
  bits (every table sums to exactly 4096 and gives every symbol at least 1);
* the encoder runs over the symbols in reverse and starts from
  ``x = RANS_L``, so the decoder must end in exactly that state with every
  byte consumed; anything else is reported as a corrupted payload.

Stream layout (no header: symbol counts and models belong to the container)::

    4 bytes   final encoder state, little-endian (first decoder state)
    N bytes   renormalisation bytes in the order the decoder reads them

Models
------
``encode`` and ``decode`` take ``models``: a sequence of ``(StaticModel,
count)`` pairs that partition the symbol array in order, e.g.
``[(m0, 1536), (m1, 1536)]`` codes the first 1536 symbols with ``m0`` and the
next 1536 with ``m1``.

Determinism
-----------
``quantize_pmf`` performs one float64 scaling of the counts, using only IEEE
operations that are correctly rounded on every platform (no ``log``/``exp``
from libm), to integer weights; all later work is exact integer arithmetic with
ties broken by the lower symbol index.  The same counts therefore give the same
table, and the same bytes, on every machine.
"""

from __future__ import annotations

import heapq
import math
import operator
from typing import Sequence, Tuple

import numpy as np

from edgecodec.errors import StreamError

__all__ = [
    "PRECISION_BITS",
    "RANS_L",
    "StaticModel",
    "quantize_pmf",
    "encode",
    "decode",
]

PRECISION_BITS = 12
_TOTAL = 1 << PRECISION_BITS  # 4096
_MASK = _TOTAL - 1
RANS_L = 1 << 23  # lower bound of the normalised state interval [L, 256 L)
_STATE_BYTES = 4
_STATE_LIMIT = 1 << 31  # the encoder's final state is always < 2**31

# Resolution of the integer weights that quantize_pmf works from.
_WEIGHT_BITS = 40
# Extra fixed-point bits of the greedy marginal-cost keys.
_KEY_BITS = 20


# --------------------------------------------------------------------------- #
# Frequency tables
# --------------------------------------------------------------------------- #
def quantize_pmf(counts) -> np.ndarray:
    """Quantize non-negative ``counts`` to a rANS frequency table.

    Returns a uint32 array of the same length ``K`` (``2 <= K <= 4096``) that
    sums to exactly ``2**PRECISION_BITS`` with every entry >= 1, so every
    symbol stays codable even if its count is zero.  All-zero counts give the
    (near-)uniform table.

    Method (deterministic):

    1. one float64 scaling to integer weights
       ``w_i = floor(c_i / max(c) / fsum(c / max(c)) * 2**40)``;
    2. ``f_i = max(1, floor(w_i * 4096 / W))`` with ``W = sum(w)`` (exact
       integers);
    3. fix the sum greedily one unit at a time: while short, add to the
       symbol with the largest marginal gain ``w_i / (f_i + 1/2)``; while
       over, take from the symbol (with ``f_i > 1``) with the smallest
       marginal cost ``w_i / (f_i - 1/2)``.  Both keys are approximations of
       ``w_i * |log(f_i +- 1) - log(f_i)|``, computed as exact integer floor
       divisions.  Ties (equal keys) pick the lower symbol index, whether
       a unit is being added or removed.
    """
    c = np.asarray(counts)
    if c.ndim != 1:
        raise ValueError(f"counts must be 1-D, got shape {c.shape}")
    k = c.shape[0]
    if not 2 <= k <= _TOTAL:
        raise ValueError(f"counts must have between 2 and {_TOTAL} entries, got {k}")
    if c.dtype.kind not in "biuf":
        raise ValueError(f"counts must be numeric, got dtype {c.dtype}")
    c = c.astype(np.float64)
    if not np.all(np.isfinite(c)):
        raise ValueError("counts must be finite")
    if np.any(c < 0):
        raise ValueError("counts must be non-negative")

    # Step 1: the single float64 scaling. Dividing by the maximum first keeps
    # the sum finite for huge counts. math.fsum is exactly rounded (unlike
    # np.sum, whose pairwise order is an implementation detail), IEEE division
    # is correctly rounded and scaling by 2**40 is exact, so the weights are
    # bit-identical on every platform.
    peak = float(c.max())
    if peak == 0.0:
        weights = [1] * k  # nothing observed: uniform
    else:
        c = c / peak
        total = math.fsum(c.tolist())
        w = np.floor(c / total * float(1 << _WEIGHT_BITS))
        weights = [int(v) for v in w.tolist()]

    # Step 2: integer floor of the proportional share, at least 1.
    wsum = sum(weights)
    freqs = [max(1, (wi * _TOTAL) // wsum) for wi in weights]
    diff = _TOTAL - sum(freqs)

    # Step 3: greedy fix-up with exact integer keys; heap ties -> lower index.
    if diff > 0:
        # Max-heap on the gain key: negate the (positive) floored key.
        heap = [(-(((2 * weights[i]) << _KEY_BITS) // (2 * freqs[i] + 1)), i)
                for i in range(k)]
        heapq.heapify(heap)
        for _ in range(diff):
            _, i = heapq.heappop(heap)
            freqs[i] += 1
            heapq.heappush(
                heap, (-(((2 * weights[i]) << _KEY_BITS) // (2 * freqs[i] + 1)), i))
    elif diff < 0:
        heap = [((((2 * weights[i]) << _KEY_BITS) // (2 * freqs[i] - 1)), i)
                for i in range(k) if freqs[i] > 1]
        heapq.heapify(heap)
        for _ in range(-diff):
            # Cannot run dry: K <= 4096 ones always fit in the total.
            _, i = heapq.heappop(heap)
            freqs[i] -= 1
            if freqs[i] > 1:
                heapq.heappush(
                    heap, ((((2 * weights[i]) << _KEY_BITS) // (2 * freqs[i] - 1)), i))

    out = np.array(freqs, dtype=np.uint32)
    assert int(out.sum()) == _TOTAL and int(out.min()) >= 1
    return out


class StaticModel:
    """A fixed symbol distribution quantized to ``2**PRECISION_BITS``.

    ``StaticModel(freqs)`` with ``freqs`` as returned by :func:`quantize_pmf`
    (integers, all >= 1, sum == 4096; ``ValueError`` otherwise).

    Attributes (read-only numpy arrays):

    * ``freqs``  -- uint32, shape ``(K,)``;
    * ``cum``    -- uint32, shape ``(K + 1,)``: ``cum[s]`` is the start of
      symbol ``s``'s slot range, ``cum[K] == 4096``;
    * ``lookup`` -- uint16, shape ``(4096,)``: slot -> symbol;
    * ``num_symbols`` -- ``K``.
    """

    __slots__ = ("freqs", "cum", "lookup", "num_symbols", "_enc", "_dec")

    def __init__(self, freqs):
        f = np.asarray(freqs)
        if f.ndim != 1 or f.shape[0] < 1:
            raise ValueError(f"freqs must be a non-empty 1-D array, got shape {f.shape}")
        if f.dtype.kind == "f":
            if not np.all(np.isfinite(f)) or not np.all(f == np.floor(f)):
                raise ValueError("freqs must be integers")
        elif f.dtype.kind not in "iu":
            raise ValueError(f"freqs must be integers, got dtype {f.dtype}")
        if np.any(f < 1):
            raise ValueError("every frequency must be >= 1 so every symbol stays codable")
        if f.shape[0] > _TOTAL or int(np.sum(f, dtype=np.float64)) != _TOTAL:
            raise ValueError(
                f"freqs must sum to 2**{PRECISION_BITS} = {_TOTAL}, "
                f"got {int(np.sum(f, dtype=np.float64))}")
        f = f.astype(np.uint32)
        k = f.shape[0]
        cum = np.zeros(k + 1, dtype=np.uint32)
        np.cumsum(f, out=cum[1:])
        lookup = np.repeat(np.arange(k, dtype=np.uint16), f)
        for arr in (f, cum, lookup):
            arr.flags.writeable = False
        self.freqs = f
        self.cum = cum
        self.lookup = lookup
        self.num_symbols = k

        # Plain-Python tables for the coding loops (numpy scalars are slow).
        fl = f.tolist()
        cl = cum.tolist()
        xmax_unit = (RANS_L >> PRECISION_BITS) << 8
        # per symbol: (freq, start, renormalisation threshold)
        self._enc = [(fl[s], cl[s], xmax_unit * fl[s]) for s in range(k)]
        # per slot: (symbol, freq, slot - start)
        lk = lookup.tolist()
        self._dec = [(lk[j], fl[lk[j]], j - cl[lk[j]]) for j in range(_TOTAL)]

    def bits(self, symbols) -> float:
        """Ideal code length of ``symbols`` under this model, ``-sum log2 p``."""
        s = _as_symbols(symbols)
        if s.size == 0:
            return 0.0
        _check_range(s, self.num_symbols, 0)
        return float(s.size * PRECISION_BITS
                     - np.sum(np.log2(self.freqs[s].astype(np.float64))))

    def __repr__(self) -> str:
        return f"StaticModel(num_symbols={self.num_symbols})"


# --------------------------------------------------------------------------- #
# Coding
# --------------------------------------------------------------------------- #
def _as_symbols(symbols) -> np.ndarray:
    s = np.asarray(symbols)
    if s.ndim != 1:
        raise ValueError(f"symbols must be a 1-D array, got shape {s.shape}")
    if s.dtype.kind not in "iu":
        if s.size == 0:
            return s.astype(np.int64)
        raise ValueError(f"symbols must be integers, got dtype {s.dtype}")
    return s


def _check_range(seg: np.ndarray, k: int, offset: int) -> None:
    lo = int(seg.min())
    hi = int(seg.max())
    if lo < 0 or hi >= k:
        bad = lo if lo < 0 else hi
        where = offset + int(np.flatnonzero(seg == bad)[0])
        raise ValueError(
            f"symbol {bad} at position {where} is out of range for a model "
            f"with {k} symbols")


def _check_models(models) -> Tuple[Tuple[StaticModel, int], ...]:
    try:
        pairs = list(models)
    except TypeError:
        raise ValueError("models must be a sequence of (StaticModel, count) pairs") from None
    out = []
    for j, pair in enumerate(pairs):
        try:
            model, count = pair
        except (TypeError, ValueError):
            raise ValueError(
                f"models[{j}] must be a (StaticModel, count) pair, got {pair!r}") from None
        if not isinstance(model, StaticModel):
            raise ValueError(f"models[{j}][0] must be a StaticModel, got {type(model).__name__}")
        if isinstance(count, bool):
            raise ValueError(f"models[{j}][1] must be an integer count, got {count!r}")
        try:
            count = operator.index(count)
        except TypeError:
            raise ValueError(f"models[{j}][1] must be an integer count, got {count!r}") from None
        if count < 0:
            raise ValueError(f"models[{j}][1] must be >= 0, got {count}")
        out.append((model, count))
    return tuple(out)


def encode(symbols, models: Sequence[Tuple[StaticModel, int]]) -> bytes:
    """rANS-encode the 1-D integer array ``symbols``.

    ``models`` is a sequence of ``(StaticModel, count)`` pairs partitioning
    ``symbols`` in order.  Raises ``ValueError`` if the counts do not add up
    to ``len(symbols)`` or a symbol is out of range for its model.
    """
    s = _as_symbols(symbols)
    pairs = _check_models(models)
    total = sum(c for _, c in pairs)
    if total != s.shape[0]:
        raise ValueError(
            f"model counts add up to {total} but there are {s.shape[0]} symbols")

    # Validate everything before coding anything.
    segments = []
    pos = 0
    for model, count in pairs:
        seg = s[pos:pos + count]
        if count:
            _check_range(seg, model.num_symbols, pos)
        segments.append((model, seg))
        pos += count

    out = bytearray()
    emit = out.append
    x = RANS_L
    shift = PRECISION_BITS
    for model, seg in reversed(segments):
        if seg.shape[0] == 0:
            continue
        enc = model._enc
        for sym in seg[::-1].tolist():
            f, start, xmax = enc[sym]
            while x >= xmax:
                emit(x & 0xFF)
                x >>= 8
            q, r = divmod(x, f)
            x = (q << shift) + r + start
    out.reverse()
    return x.to_bytes(_STATE_BYTES, "little") + bytes(out)


def decode(data, models: Sequence[Tuple[StaticModel, int]]) -> np.ndarray:
    """Inverse of :func:`encode` with the same ``models``; returns int64.

    Raises :class:`edgecodec.errors.StreamError` if ``data`` is too short,
    runs out of bytes, has bytes left over, or does not return the coder to its
    initial state (corrupted payload).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    data = bytes(data)
    pairs = _check_models(models)
    n_total = sum(c for _, c in pairs)
    n = len(data)
    if n < _STATE_BYTES:
        raise StreamError(
            f"entropy payload too short: {n} bytes, need at least {_STATE_BYTES}")
    x = int.from_bytes(data[:_STATE_BYTES], "little")
    if not RANS_L <= x < _STATE_LIMIT:
        raise StreamError("entropy payload corrupted: initial rANS state out of range")

    out = []
    push = out.append
    pos = _STATE_BYTES
    mask = _MASK
    shift = PRECISION_BITS
    lower = RANS_L
    try:
        for model, count in pairs:
            dec = model._dec
            for _ in range(count):
                sym, f, off = dec[x & mask]
                x = f * (x >> shift) + off
                push(sym)
                while x < lower:
                    x = (x << 8) | data[pos]
                    pos += 1
    except IndexError:
        raise StreamError(
            f"entropy payload truncated: ran out of bytes after {len(out) - 1} "
            f"of {n_total} symbols ({n} bytes)") from None

    if x != RANS_L:
        raise StreamError("entropy payload corrupted: final rANS state does not match")
    if pos != n:
        raise StreamError(f"entropy payload has {n - pos} unexpected trailing bytes")
    return np.array(out, dtype=np.int64)
