"""The .edc bitstream: a 30-byte header and the entropy-coded VQ indices (numpy + Python only).

Header, little-endian:

    offset size field
    0      4    magic b"\\x8bEDC" (high bit set, so text-mode transfers are caught)
    4      1    format version (1)
    5      1    rate index r (stages 0..r follow)
    6      2    image height
    8      2    image width
    10     8    model fingerprint (spec.py)
    18     4    noise seed
    22     4    payload length in bytes
    26     4    CRC32 of bytes 0..25 and the payload

Payload: rANS-coded indices (entropy.py), stage-major, row-major within a stage, each stage with
its own static prior from the model. Every check below runs before anything large is allocated.
For a model whose family codes its own payload (spec.coder "family"), the payload is that family's
file unchanged (OneDC's container), rate 0 and seed 0: the header adds the fingerprint and the CRC.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import entropy
from .errors import StreamError
from .spec import StreamSpec

MAGIC = b"\x8bEDC"
VERSION = 1
_HEADER = struct.Struct("<4sBBHH8sIII")
HEADER_BYTES = _HEADER.size
MAX_SIDE = 16384  # a stream claiming more than this is treated as corrupt, whatever the CRC says
MAX_PIXELS = 64_000_000
BAD_MAGIC = "not an edgecodec stream (bad magic; a codec's own file, such as OneDC's, needs --model)"


@dataclass(frozen=True)
class Header:
    version: int
    rate: int
    height: int
    width: int
    fingerprint: bytes
    seed: int
    payload_bytes: int

    @property
    def total_bytes(self) -> int:
        return HEADER_BYTES + self.payload_bytes


@dataclass
class ParsedStream:
    header: Header
    indices: np.ndarray  # (1, rate + 1, h, w) int64

    @property
    def rate(self) -> int:
        return self.header.rate


def read_header(data: bytes) -> Header:
    """Validate framing (length, magic, version, CRC, sizes); no model needed."""
    if len(data) < HEADER_BYTES:
        if data[: len(MAGIC)] != MAGIC[: len(data)]:
            raise StreamError(BAD_MAGIC)
        raise StreamError(f"truncated stream: {len(data)} bytes, the header alone is {HEADER_BYTES}")
    magic, version, rate, height, width, fp, seed, payload, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise StreamError(BAD_MAGIC)
    if version != VERSION:
        raise StreamError(f"unsupported stream format version {version} (this edgecodec reads version {VERSION})")
    if len(data) < HEADER_BYTES + payload:
        raise StreamError(f"truncated stream: header announces {payload} payload bytes, "
                          f"{len(data) - HEADER_BYTES} present")
    if len(data) > HEADER_BYTES + payload:
        raise StreamError(f"corrupted stream: {len(data) - HEADER_BYTES - payload} unexpected bytes after the payload")
    if zlib.crc32(data[: HEADER_BYTES - 4] + data[HEADER_BYTES:]) != crc:
        raise StreamError("corrupted stream: CRC32 mismatch")
    if height == 0 or width == 0 or height > MAX_SIDE or width > MAX_SIDE or height * width > MAX_PIXELS:
        raise StreamError(f"refusing stream with absurd image size {width}x{height} "
                          f"(limit {MAX_SIDE} px a side, {MAX_PIXELS} px in all)")
    return Header(version, rate, height, width, fp, seed, payload)


# Fingerprints of embedded weights that were replaced: their streams get a hint, not only a refusal.
RETIRED = {"b72f824bdf5ea963": "the 'tiny' of edgecodec 0.3 and earlier (retrained in 0.4); "
                               "decode the stream with edgecodec 0.3, or re-encode the original image",
           "9d9d719b16549541": "the 'tiny' of edgecodec 0.4 (retrained in 0.5: latent stage on the unquantized "
                               "code too); decode the stream with edgecodec 0.4, or re-encode the original image"}


def check_compatible(header: Header, spec: StreamSpec) -> None:
    if header.fingerprint != spec.fingerprint:
        made_by = RETIRED.get(header.fingerprint.hex())
        hint = f": that fingerprint is {made_by}" if made_by else ""
        raise StreamError(f"stream was made by another model (fingerprint {header.fingerprint.hex()}, "
                          f"this decoder's {spec.model} model is {spec.fingerprint.hex()}){hint}")
    if header.rate >= spec.num_rates:
        raise StreamError(f"stream rate {header.rate} is not offered by model {spec.model} "
                          f"(rates 0..{spec.num_rates - 1})")


def parse(data: bytes, spec: StreamSpec) -> ParsedStream:
    header = read_header(data)
    check_compatible(header, spec)
    h, w = spec.latent_size(header.height, header.width)
    models = spec.entropy_models(header.rate)
    symbols = entropy.decode(data[HEADER_BYTES:], [(m, h * w) for m in models])
    return ParsedStream(header, symbols.reshape(1, header.rate + 1, h, w))


def payload_of(data: bytes, spec: StreamSpec) -> tuple[Header | None, bytes]:
    """A family-coded stream's payload: from an .edc (checked against the spec), or the family's own
    file as it is (no header: None), which the family's reader then validates."""
    if data[: len(MAGIC)] == MAGIC or spec.container is None:
        header = read_header(data)
        check_compatible(header, spec)
        return header, data[HEADER_BYTES:]
    return None, data


def wrap(spec: StreamSpec, payload: bytes, height: int, width: int, rate: int = 0, seed: int = 0) -> bytes:
    """Header + payload (the payload already entropy-coded)."""
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE and height * width <= MAX_PIXELS):
        raise ValueError(f"image size {width}x{height} exceeds the stream format's limits")
    head = _HEADER.pack(MAGIC, VERSION, rate, height, width, spec.fingerprint, seed & 0xFFFFFFFF,
                        len(payload), 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head + payload)) + payload


def write(spec: StreamSpec, indices: np.ndarray, height: int, width: int, seed: int) -> bytes:
    """indices: (1, rate + 1, h, w) integer array for an image of height x width pixels."""
    _, stages, h, w = indices.shape
    rate = stages - 1
    if not 0 <= rate < spec.num_rates:
        raise ValueError(f"rate {rate} out of range for model {spec.model}")
    if (h, w) != spec.latent_size(height, width):
        raise ValueError(f"index grid {h}x{w} does not match a {height}x{width} image")
    payload = entropy.encode(indices.reshape(-1), [(m, h * w) for m in spec.entropy_models(rate)])
    return wrap(spec, payload, height, width, rate, seed)
