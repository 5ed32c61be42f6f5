"""OneDC's Gaussian-conditional rANS coder, byte-compatible with its C++ coder (src/cpp/rans, py_rans).

Format (facts of OneDC's coder, written here from scratch):
* y-stream = one flag byte, then the rANS stream. The flag is ((parts - 1) << 4) | 1 when the parts'
  sizes are 2-byte fields; OneDC's image codec uses one part, so the flag is always 0x01.
* rANS stream (Giesen's rans_byte): 32-bit state in [L, 256 L), L = 2**23; 16-bit CDFs; the encoder
  starts from L and runs backwards; the stream opens with the encoder's final state, little-endian,
  followed by the renormalisation bytes in the order the decoder reads them. The decoder ends in L.
* symbol s under CDF i (offset o = -c, tail index t = cdf_length[i] - 2): v = s - o; 0 <= v < t is coded
  as itself; otherwise the tail symbol t is coded, then a "bypass" value raw = -2v - 1 (v < 0) or
  2(v - t) (v >= t), as n = the number of 2-bit chunks of raw (coded as n // 3 chunks "3" and then
  n % 3), then raw's chunks from the least significant. A bypass chunk is pushed into / popped from the
  state's low 2 bits (not a 1/4 range), renormalising with the bound of a frequency of 2**14.
* OneDC hands the coder int16 symbols clipped to +-30000, so a decoded value outside that range, or a
  bypass longer than 8 chunks, cannot come from its encoder and is reported as a corrupt stream.

Error detection: rANS carries no redundancy beyond its final state, which (with the byte count) catches
almost every corruption. Two kinds of flip change one symbol and nothing else: one that moves a
symbol's slot to another symbol of the same frequency (e.g. between the frequency-1 symbols of the
small-scale CDFs), and one inside a raw bypass chunk, which is stored verbatim (shifted out of the
state, never mixed into it). About 1 % of single-bit flips in the reference streams are of these kinds.

Speed: the per-symbol loops are plain Python over indexable sequences, compiled with numba.njit when
numba imports (numpy arrays in) and run as plain Python otherwise (lists and bytes in, which CPython
indexes far faster than numpy arrays): one implementation, an optional JIT.
"""

from __future__ import annotations

import functools

import numpy as np

from edgecodec.errors import StreamError

from .gaussian import Cdfs, build_cdfs

__all__ = ["RANS_L", "FLAG_ONE_STREAM", "SYMBOL_LIMIT", "encode", "RansReader"]

RANS_L = 1 << 23
PRECISION = 16
FLAG_ONE_STREAM = 0x01
SYMBOL_LIMIT = 30000  # OneDC clips coded symbols to +-30000 (int16)
_STATE_BYTES = 4
_MAX_BYPASS_CHUNKS = 8  # raw < 2 * (30000 + 50) < 4**8

# _decode_loop status codes
_OK, _OUT_OF_DATA, _BAD_VALUE = 0, 1, 2


def _encode_loop(symbols, indices, cdf, stride, lengths, offsets, out):
    """Encode backwards into out (filled from its end); returns (state, first used position of out).
    Symbols must already lie within +-SYMBOL_LIMIT and indices within the table."""
    x = RANS_L
    pos = len(out)
    bits_max = 1 << 29  # (L >> 16 << 8) * 2**14: renormalisation bound of a bypass chunk
    for i in range(len(symbols) - 1, -1, -1):
        idx = indices[i]
        tail = lengths[idx] - 2
        value = symbols[i] - offsets[idx]
        if value < 0 or value >= tail:
            raw = -2 * value - 1 if value < 0 else 2 * (value - tail)
            value = tail
            n = 0
            while (raw >> (2 * n)) != 0:
                n += 1
            # Pushed in reverse of the decoder's reading order: raw chunks (last first), n % 3, the 3s.
            for k in range(n + 1 + n // 3):
                if k < n:
                    chunk = (raw >> (2 * (n - 1 - k))) & 3
                elif k == n:
                    chunk = n % 3
                else:
                    chunk = 3
                while x >= bits_max:
                    pos -= 1
                    out[pos] = x & 0xFF
                    x >>= 8
                x = (x << 2) | chunk
        base = idx * stride + value
        start = cdf[base]
        freq = cdf[base + 1] - start
        x_max = freq << 15
        while x >= x_max:
            pos -= 1
            out[pos] = x & 0xFF
            x >>= 8
        x = ((x // freq) << PRECISION) + x % freq + start
    return x, pos


def _decode_loop(data, pos, x, indices, cdf, stride, lengths, offsets, out):
    """Decode len(indices) symbols into out; returns (state, pos, status, number of symbols done)."""
    end = len(data)
    for i in range(len(indices)):
        idx = indices[i]
        base = idx * stride
        n_cdf = lengths[idx]
        cum = x & 0xFFFF
        lo = 0
        hi = n_cdf - 1  # cdf[lo] <= cum < cdf[hi]: cdf[0] = 0, cdf[n_cdf - 1] = 2**16
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if cdf[base + mid] <= cum:
                lo = mid
            else:
                hi = mid
        start = cdf[base + lo]
        x = (cdf[base + lo + 1] - start) * (x >> PRECISION) + cum - start
        while x < RANS_L:
            if pos >= end:
                return x, pos, _OUT_OF_DATA, i
            x = (x << 8) | data[pos]
            pos += 1
        value = lo
        tail = n_cdf - 2
        if value == tail:
            n = 0
            raw = 0
            k = 0  # chunks read; the count's chunks continue while they are 3
            counting = True
            while counting or k < n:
                chunk = x & 3
                x >>= 2
                if x < RANS_L:
                    if pos >= end:
                        return x, pos, _OUT_OF_DATA, i
                    x = (x << 8) | data[pos]
                    pos += 1
                if counting:
                    n += chunk
                    counting = chunk == 3
                    if n > _MAX_BYPASS_CHUNKS:
                        return x, pos, _BAD_VALUE, i
                else:
                    raw |= chunk << (2 * k)
                    k += 1
            value = -(raw >> 1) - 1 if raw & 1 else (raw >> 1) + tail
        value += offsets[idx]
        if value < -SYMBOL_LIMIT or value > SYMBOL_LIMIT:
            return x, pos, _BAD_VALUE, i
        out[i] = value
    return x, pos, _OK, len(indices)


try:
    import numba
except ImportError:
    _JIT = False
    _encode_impl, _decode_impl = _encode_loop, _decode_loop
else:
    _JIT = True
    _encode_impl = numba.njit(cache=True, nogil=True)(_encode_loop)
    _decode_impl = numba.njit(cache=True, nogil=True)(_decode_loop)


class _Tables:
    """The CDF tables in the container the active loop indexes fastest."""

    def __init__(self, cdfs: Cdfs, jit: bool):
        self.count = cdfs.quantized_cdf.shape[0]
        self.stride = cdfs.quantized_cdf.shape[1]
        flat = np.ascontiguousarray(cdfs.quantized_cdf, dtype=np.int64).ravel()
        lengths = np.asarray(cdfs.cdf_length, dtype=np.int64)
        offsets = np.asarray(cdfs.offset, dtype=np.int64)
        if jit:
            self.cdf, self.lengths, self.offsets = flat, lengths, offsets
        else:
            self.cdf, self.lengths, self.offsets = flat.tolist(), lengths.tolist(), offsets.tolist()

    def check_indices(self, indices) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise ValueError(f"CDF indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.count):
            raise ValueError(f"CDF indices must lie in 0..{self.count - 1}, got {idx.min()}..{idx.max()}")
        return idx.astype(np.int64)


@functools.cache
def _default_tables(jit: bool) -> _Tables:
    return _Tables(build_cdfs(), jit)


def _tables(cdfs: Cdfs | None) -> _Tables:
    return _default_tables(_JIT) if cdfs is None else _Tables(cdfs, _JIT)


def encode(symbols, indices, cdfs: Cdfs | None = None) -> bytes:
    """The y-stream (flag byte + rANS) coding symbols[i] with CDF indices[i], in that order.

    cdfs defaults to OneDC's table (gaussian.build_cdfs). Symbols must lie within +-30000 (OneDC clips
    to that before coding). Unlike OneDC's C++ encoder, whose output buffer holds one byte per coded
    item, this one never overflows on short or unlucky streams.
    """
    tables = _tables(cdfs)
    idx = tables.check_indices(indices)
    sym = np.asarray(symbols)
    if sym.shape != idx.shape or sym.dtype.kind not in "iu":
        raise ValueError(f"symbols must be an integer array shaped like the indices {idx.shape}, "
                         f"got {sym.dtype} {sym.shape}")
    if sym.size and (sym.min() < -SYMBOL_LIMIT or sym.max() > SYMBOL_LIMIT):
        raise ValueError(f"symbols must lie within +-{SYMBOL_LIMIT}, got {sym.min()}..{sym.max()}")
    sym = sym.astype(np.int64)
    # A symbol costs at most 2 bytes, a bypass chunk at most 1; a symbol has at most 11 chunks.
    capacity = 13 * sym.size
    if _JIT:
        out = np.zeros(capacity, dtype=np.uint8)
        x, pos = _encode_impl(sym, idx, tables.cdf, tables.stride, tables.lengths, tables.offsets, out)
    else:
        out = bytearray(capacity)
        x, pos = _encode_impl(sym.tolist(), idx.tolist(), tables.cdf, tables.stride, tables.lengths,
                              tables.offsets, out)
    return bytes([FLAG_ONE_STREAM]) + int(x).to_bytes(_STATE_BYTES, "little") + bytes(out[pos:])


class RansReader:
    """Decodes a y-stream chunk by chunk: decode(indices) for each pass, then finish().

    Raises StreamError (one line) on a foreign flag byte, a stream too short or out of data, an
    impossible value or initial state, and, in finish(), unread bytes or a wrong final state. After a
    StreamError the reader is unusable.
    """

    def __init__(self, data: bytes, cdfs: Cdfs | None = None):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < 1 + _STATE_BYTES:
            raise StreamError(f"y-stream too short: {len(data)} bytes, need at least {1 + _STATE_BYTES}")
        if data[0] != FLAG_ONE_STREAM:
            raise StreamError(f"y-stream flag byte is 0x{data[0]:02x}, expected 0x01 (one rANS stream)")
        state = int.from_bytes(data[1:1 + _STATE_BYTES], "little")
        if not RANS_L <= state < 1 << 31:  # the encoder's final state always lies in [L, 2**31)
            raise StreamError("y-stream corrupted: initial rANS state out of range")
        self._tables = _tables(cdfs)
        self._data = np.frombuffer(data, dtype=np.uint8) if _JIT else data
        self._pos = 1 + _STATE_BYTES
        self._state = state
        self._decoded = 0

    def decode(self, indices) -> np.ndarray:
        """The next len(indices) symbols, each under the CDF of its index; int32."""
        idx = self._tables.check_indices(indices)
        t = self._tables
        if _JIT:
            out = np.zeros(idx.size, dtype=np.int64)
            x, pos, status, done = _decode_impl(self._data, self._pos, self._state, idx, t.cdf, t.stride,
                                                t.lengths, t.offsets, out)
        else:
            out = [0] * idx.size
            x, pos, status, done = _decode_impl(self._data, self._pos, self._state, idx.tolist(), t.cdf,
                                                t.stride, t.lengths, t.offsets, out)
        if status == _OUT_OF_DATA:
            raise StreamError(f"y-stream truncated: out of data at symbol {self._decoded + done} "
                              f"({len(self._data)} bytes)")
        if status == _BAD_VALUE:
            raise StreamError(f"y-stream corrupted: impossible value at symbol {self._decoded + done}")
        self._state, self._pos = int(x), int(pos)
        self._decoded += done
        return np.asarray(out, dtype=np.int32)

    def finish(self) -> None:
        """Check that the stream ended exactly: every byte read and the coder back in its initial state."""
        if self._pos != len(self._data):
            raise StreamError(f"y-stream corrupted: {len(self._data) - self._pos} bytes left after "
                              f"{self._decoded} symbols")
        if self._state != RANS_L:
            raise StreamError(f"y-stream corrupted: final rANS state does not match after "
                              f"{self._decoded} symbols")
