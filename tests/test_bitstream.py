"""Bad streams are refused, each with its own clear message, before any large allocation."""

import struct
import zlib

import pytest

from edgecodec import bitstream
from edgecodec.coding import encode_image
from edgecodec.errors import StreamError
from edgecodec.metrics import bpp


@pytest.fixture(scope="module")
def stream(tiny, photo):
    return encode_image(tiny.codec, photo, 1)


def _reframe(data: bytes, **fields) -> bytes:
    """Rewrite header fields and fix the CRC, so only the named field is wrong."""
    names = ["magic", "version", "rate", "height", "width", "fingerprint", "seed", "payload", "crc"]
    values = dict(zip(names, struct.unpack_from("<4sBBHH8sIII", data)))
    values.update(fields)
    head = struct.pack("<4sBBHH8sII", *[values[n] for n in names[:-1]])
    payload = data[bitstream.HEADER_BYTES:]
    return head + struct.pack("<I", zlib.crc32(head + payload)) + payload


def test_bpp_counts_the_whole_file(stream, photo):
    hdr = bitstream.read_header(stream)
    assert len(stream) == bitstream.HEADER_BYTES + hdr.payload_bytes
    assert bpp(len(stream), *photo.shape[:2]) == len(stream) * 8 / (200 * 260)


@pytest.mark.parametrize("cut", [0, 5, bitstream.HEADER_BYTES - 1, bitstream.HEADER_BYTES, -1])
def test_truncated(tiny_decoder, stream, cut):
    data = stream[:cut] if cut >= 0 else stream[:cut]
    with pytest.raises(StreamError, match="truncated"):
        tiny_decoder.decode(data)


def test_corrupted_payload_and_header(tiny_decoder, stream):
    for pos in (bitstream.HEADER_BYTES + 3, len(stream) - 1, 7, 19):
        bad = bytearray(stream)
        bad[pos] ^= 0x10
        with pytest.raises(StreamError, match="CRC32 mismatch"):
            tiny_decoder.decode(bytes(bad))


def test_trailing_bytes(tiny_decoder, stream):
    with pytest.raises(StreamError, match="unexpected bytes after the payload"):
        tiny_decoder.decode(stream + b"\0")


def test_not_a_stream(tiny_decoder):
    with pytest.raises(StreamError, match="bad magic"):
        tiny_decoder.decode(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_wrong_version(tiny_decoder, stream):
    with pytest.raises(StreamError, match="unsupported stream format version 9"):
        tiny_decoder.decode(_reframe(stream, version=9))


def test_foreign_model(stream, photo):
    from dataclasses import replace

    from edgecodec.families.diffo.config import TINY
    from edgecodec.runtimes import create_decoder
    from edgecodec.weights import LoadedModel
    from edgecodec.zoo import build_model

    other = build_model(replace(TINY, init_seed=1))
    decoder = create_decoder("torch-cpu", model=LoadedModel(other, "test", False))
    with pytest.raises(StreamError, match="made by another model"):
        decoder.decode(stream)


@pytest.mark.parametrize("retired", sorted(bitstream.RETIRED))
def test_stream_of_retired_weights_says_which(tiny_decoder, stream, retired):
    """Streams of the weights shipped before a retrain are refused with the version that decodes them."""
    with pytest.raises(StreamError, match=rf"fingerprint {retired}.*decode the stream with edgecodec \d+\.\d+"):
        tiny_decoder.decode(_reframe(stream, fingerprint=bytes.fromhex(retired)))


def test_rate_not_offered(tiny_decoder, stream):
    with pytest.raises(StreamError, match="rate 7 is not offered"):
        tiny_decoder.decode(_reframe(stream, rate=7))


@pytest.mark.parametrize("height,width", [(0, 100), (60000, 60000), (16384, 16384)])
def test_absurd_sizes(tiny_decoder, stream, height, width):
    with pytest.raises(StreamError, match="absurd image size"):
        tiny_decoder.decode(_reframe(stream, height=height, width=width))


def test_size_that_disagrees_with_payload(tiny_decoder, stream):
    """A plausible but wrong size makes the entropy decoder run out or over: refused, not garbage."""
    with pytest.raises(StreamError):
        tiny_decoder.decode(_reframe(stream, height=1000, width=1000))


def test_messages_are_distinct(tiny_decoder, stream):
    bad = [stream[:10], stream + b"x", _reframe(stream, version=2), _reframe(stream, width=0),
           b"junk" * 10, _reframe(stream, rate=9)]
    msgs = set()
    for data in bad:
        with pytest.raises(StreamError) as err:
            tiny_decoder.decode(data)
        assert "\n" not in str(err.value)
        msgs.add(str(err.value).split(":")[0])
    assert len(msgs) == len(bad)
