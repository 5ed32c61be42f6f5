"""OneDC's file container and its FSQ z-stream (numpy only).

Container (OneDC's encode_i / decode_i in src/modules/entropy/utils.py):

    4 bytes  H, the original image height   big-endian uint32
    4 bytes  W, the original image width    big-endian uint32
    4 bytes  length of the y-stream         big-endian uint32
    4 bytes  caption length, always 0       big-endian uint32
    ...      the y-stream (rans.py)
    ...      the z-stream: ceil(bits * n_z / 8) bytes, n_z = (Hp / 64) (Wp / 64)

Hp, Wp are H, W rounded up to multiples of 64 (the encoder pads bottom/right). The z-stream holds one
FSQ index per 64x64 block, bits = log2(prod(levels)) each, in raster order, concatenated MSB first and
written as one big-endian integer, so its pad bits are leading zeros. OneDC ignores bytes after the
z-stream and leading pad bits; here both are errors.
"""

from __future__ import annotations

import math
import struct
from typing import Sequence, Tuple

import numpy as np

from edgecodec.errors import StreamError

__all__ = ["HEADER_BYTES", "DOWNSAMPLE", "FSQ_LEVELS", "MAX_PIXELS", "padded_size", "z_grid", "z_bits",
           "z_stream_bytes", "parse", "write", "pack_z", "unpack_z", "fsq_codes", "fsq_indices"]

_HEADER = struct.Struct(">4I")
HEADER_BYTES = _HEADER.size
DOWNSAMPLE = 64  # one z index per 64x64 block
FSQ_LEVELS = (4,) * 7  # OneDC's z_fsq_levels: 16384 codes, 14 bits
MAX_PIXELS = 64_000_000  # a header claiming more is treated as corrupt (as for .edc streams)
_FSQ_EPS = 1e-3  # vector-quantize-pytorch FSQ.bound's eps


def padded_size(height: int, width: int) -> Tuple[int, int]:
    """The encoder's padded size: H, W rounded up to multiples of 64."""
    return -(-height // DOWNSAMPLE) * DOWNSAMPLE, -(-width // DOWNSAMPLE) * DOWNSAMPLE


def z_grid(height: int, width: int) -> Tuple[int, int]:
    """(h, w) of the z index grid of an H x W image."""
    hp, wp = padded_size(height, width)
    return hp // DOWNSAMPLE, wp // DOWNSAMPLE


def z_bits(levels: Sequence[int] = FSQ_LEVELS) -> int:
    """Bits per z index. OneDC requires a power-of-two codebook; with integer levels >= 2 (FSQ divides
    by L // 2) that means every level is a power of two."""
    levels = tuple(int(v) for v in levels)
    if not levels or any(v < 2 or v & (v - 1) for v in levels):
        raise ValueError(f"FSQ levels must be powers of two >= 2, got {levels}")
    bits = sum(v.bit_length() - 1 for v in levels)
    if bits > 31:
        raise ValueError(f"FSQ codebook of 2**{bits} codes does not fit int32 indices")
    return bits


def z_stream_bytes(n: int, levels: Sequence[int] = FSQ_LEVELS) -> int:
    return -(-z_bits(levels) * n // 8)


def parse(data: bytes, levels: Sequence[int] = FSQ_LEVELS,
          max_pixels: int = MAX_PIXELS) -> Tuple[int, int, bytes, bytes]:
    """(H, W, y_stream, z_stream) of a OneDC file; StreamError (one line) for anything else."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes-like, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise StreamError(f"not a OneDC stream: {len(data)} bytes, the header alone is {HEADER_BYTES}")
    height, width, y_len, caption_len = _HEADER.unpack_from(data)
    if caption_len != 0:
        raise StreamError(f"not a OneDC stream: caption length {caption_len}, OneDC always writes 0")
    if height == 0 or width == 0 or math.prod(padded_size(height, width)) > max_pixels:
        raise StreamError(f"refusing OneDC stream with absurd image size {height}x{width} "
                          f"(limit {max_pixels} px once padded to multiples of {DOWNSAMPLE})")
    z_len = z_stream_bytes(math.prod(z_grid(height, width)), levels)
    expected = HEADER_BYTES + y_len + z_len
    if len(data) != expected:
        raise StreamError(f"OneDC stream is {len(data)} bytes, its header ({height}x{width}, y-stream "
                          f"{y_len} bytes, z-stream {z_len} bytes) needs {expected}")
    return height, width, data[HEADER_BYTES:HEADER_BYTES + y_len], data[HEADER_BYTES + y_len:]


def write(height: int, width: int, y_stream: bytes, z_indices: np.ndarray,
          levels: Sequence[int] = FSQ_LEVELS) -> bytes:
    """The OneDC file for an H x W image: header, y-stream, z indices (h, w or 1, h, w) packed."""
    z = np.asarray(z_indices)
    h, w = z_grid(height, width)
    if z.size != h * w or z.shape[-2:] != (h, w):
        raise ValueError(f"z indices {z.shape} do not match the {h}x{w} grid of a {height}x{width} image")
    if not (0 < height and 0 < width and max(height, width, len(y_stream)) < 1 << 32):
        raise ValueError(f"image size {height}x{width} or y-stream length does not fit the header")
    return _HEADER.pack(height, width, len(y_stream), 0) + bytes(y_stream) + pack_z(z.ravel(), levels)


def pack_z(indices: np.ndarray, levels: Sequence[int] = FSQ_LEVELS) -> bytes:
    """Raster-order indices -> one big-endian integer of ceil(bits * n / 8) bytes, MSB first."""
    bits = z_bits(levels)
    idx = np.asarray(indices).ravel()
    if idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= 1 << bits)):
        raise ValueError(f"z indices must be integers in 0..{(1 << bits) - 1}")
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    stream_bits = (idx.astype(np.int64)[:, None] & weights) != 0
    pad = 8 * z_stream_bytes(idx.size, levels) - stream_bits.size
    return np.packbits(np.concatenate([np.zeros(pad, dtype=bool), stream_bits.ravel()])).tobytes()


def unpack_z(z_stream: bytes, n: int, levels: Sequence[int] = FSQ_LEVELS) -> np.ndarray:
    """The n raster-order z indices (int32) of a z-stream; StreamError if it is not one."""
    bits = z_bits(levels)
    size = z_stream_bytes(n, levels)
    if len(z_stream) != size:
        raise StreamError(f"z-stream is {len(z_stream)} bytes, {n} indices of {bits} bits need {size}")
    stream_bits = np.unpackbits(np.frombuffer(bytes(z_stream), dtype=np.uint8))
    pad = stream_bits.size - bits * n
    if stream_bits[:pad].any():
        raise StreamError("z-stream corrupted: its leading pad bits are not zero")
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return (stream_bits[pad:].reshape(n, bits).astype(np.int64) @ weights).astype(np.int32)


def _basis(levels: Sequence[int]) -> np.ndarray:
    z_bits(levels)
    return np.cumprod([1, *levels[:-1]]).astype(np.int64)  # channel 0 is the least significant digit


def fsq_codes(indices: np.ndarray, levels: Sequence[int] = FSQ_LEVELS) -> np.ndarray:
    """FSQ indices (h, w) or (1, h, w) -> codes float32 (1, len(levels), h, w):
    k_c = (i // basis_c) % L_c, code_c = (k_c - L_c/2) / (L_c/2); for L = 4: {-1, -.5, 0, .5}."""
    levels = tuple(int(v) for v in levels)
    idx = np.asarray(indices).astype(np.int64)
    h, w = idx.shape[-2:]
    idx = idx.reshape(h, w)
    lv = np.array(levels, dtype=np.int64)[:, None, None]
    k = (idx[None] // _basis(levels)[:, None, None]) % lv
    half = (lv // 2).astype(np.float32)
    return ((k.astype(np.float32) - half) / half)[None]


def fsq_indices(z: np.ndarray, levels: Sequence[int] = FSQ_LEVELS) -> np.ndarray:
    """The encoder's FSQ (vector-quantize-pytorch 1.21.2, no projections): z float32 (1, d, h, w) ->
    indices int32 (1, h, w). Per channel, half_l = (L - 1)(1 + 1e-3)/2, offset = .5 for even L (else 0),
    k = round_half_even(tanh(z + atanh(offset / half_l)) * half_l - offset) + L // 2.
    tanh and atanh are correctly rounded here and SLEEF in torch: an index can differ only if the bound
    lands within an ulp of a rounding edge (+-.5, +-1.5, ...)."""
    levels = tuple(int(v) for v in levels)
    x = np.asarray(z)
    if x.dtype != np.float32 or x.ndim != 4 or x.shape[:2] != (1, len(levels)):
        raise ValueError(f"z must be float32 (1, {len(levels)}, h, w), got {x.dtype} {x.shape}")
    lv = np.array(levels, dtype=np.int64)[:, None, None]
    half_l = (lv - 1).astype(np.float32) * np.float32(1 + _FSQ_EPS) / np.float32(2)
    offset = np.where(lv % 2 == 0, np.float32(0.5), np.float32(0)).astype(np.float32)
    shift = np.arctanh((offset / half_l).astype(np.float64)).astype(np.float32)
    bounded = np.tanh((x[0] + shift).astype(np.float64)).astype(np.float32) * half_l - offset
    k = np.rint(bounded).astype(np.int64) + lv // 2
    return (k * _basis(levels)[:, None, None]).sum(axis=0, dtype=np.int64).astype(np.int32)[None]
