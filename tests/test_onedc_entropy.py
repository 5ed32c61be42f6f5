"""OneDC's entropy side (container, FSQ z-stream, Gaussian rANS, four-pass y coding) against the
reference fixture written by OneDC's own code, plus round trips on random data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecodec.errors import StreamError
from edgecodec.families.onedc import container, gaussian, passes, rans

FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "onedc-ref"
if not FIXTURE.is_dir():
    pytest.skip(f"OneDC reference fixture not found at {FIXTURE}", allow_module_level=True)

# name -> (H, W, y-stream bytes, z-stream bytes), from the fixture's README
IMAGES = {"kodim23_h128w192": (128, 192, 1413, 11), "kodim05_h150w100": (150, 100, 1401, 11)}


@pytest.fixture(scope="module", params=sorted(IMAGES))
def ref(request):
    name = request.param
    stages = np.load(FIXTURE / f"{name}.npz")
    return name, (FIXTURE / f"{name}.bin").read_bytes(), {k: stages[k] for k in stages.files}


@pytest.fixture(params=["jit", "plain"])
def backend(request, monkeypatch):
    """Run a test with numba (when installed) and with the plain-Python loops."""
    if request.param == "plain":
        monkeypatch.setattr(rans, "_JIT", False)
        monkeypatch.setattr(rans, "_encode_impl", rans._encode_loop)
        monkeypatch.setattr(rans, "_decode_impl", rans._decode_loop)
    elif not rans._JIT:
        pytest.skip("numba is not installed")
    return request.param


def _fake_prior(stages, seen=None):
    def prior(k, y_hat):
        if seen is not None:
            seen.append(y_hat.copy())
        return stages[f"prior{k}_scales"], stages[f"prior{k}_means"]
    return prior


def _indices(stages, prefix=""):
    return np.concatenate([stages[f"{prefix}pass{k}_scale_index"].ravel() for k in range(4)])


def _bits(a):
    return a.view(np.uint32)  # bit-for-bit comparison of float32 (signed zeros included)


def _one_line_stream_error(fn):
    with pytest.raises(StreamError) as info:
        fn()
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------- #
# Container and z
# --------------------------------------------------------------------------- #
def test_container_fields(ref):
    name, data, _ = ref
    h, w, y_stream, z_stream = container.parse(data)
    assert (h, w, len(y_stream), len(z_stream)) == IMAGES[name]
    assert y_stream[0] == rans.FLAG_ONE_STREAM
    assert len(data) == container.HEADER_BYTES + len(y_stream) + len(z_stream)


def test_z_indices_and_codes(ref):
    _, data, st = ref
    h, w, _, z_stream = container.parse(data)
    zh, zw = container.z_grid(h, w)
    idx = container.unpack_z(z_stream, zh * zw).reshape(1, zh, zw)
    np.testing.assert_array_equal(idx, st["z_indices"])
    codes = container.fsq_codes(idx)
    assert codes.dtype == np.float32 and codes.shape == st["z_hat"].shape
    assert np.array_equal(_bits(codes), _bits(st["z_hat"]))
    assert container.pack_z(idx) == z_stream


def test_fsq_encoder(ref):
    _, _, st = ref
    idx = container.fsq_indices(st["enc_z"])
    np.testing.assert_array_equal(idx, st["enc_z_indices"])
    np.testing.assert_array_equal(container.fsq_codes(idx), st["enc_z_hat"])


def test_fsq_codes_for_four_levels():
    codes = container.fsq_codes(np.arange(4 ** 7).reshape(1, 128, 128))
    assert set(np.unique(codes).tolist()) == {-1.0, -0.5, 0.0, 0.5}
    # channel 0 is the least significant base-4 digit
    np.testing.assert_array_equal(container.fsq_codes(np.array([[1]]))[0, :, 0, 0], [-0.5] + [-1.0] * 6)


@pytest.mark.parametrize("levels", [(4,) * 7, (8, 4, 2), (2,) * 9])
def test_z_pack_round_trip(levels):
    rng = np.random.default_rng(len(levels))
    bits = container.z_bits(levels)
    for n in (1, 5, 96, 1000):
        idx = rng.integers(0, 1 << bits, n)
        z = container.pack_z(idx, levels)
        assert len(z) == container.z_stream_bytes(n, levels) == -(-bits * n // 8)
        np.testing.assert_array_equal(container.unpack_z(z, n, levels), idx)
    # FSQ indices stay inside the codebook however large z is
    z = rng.normal(0, 100, (1, len(levels), 6, 7)).astype(np.float32)
    idx = container.fsq_indices(z, levels)
    assert idx.shape == (1, 6, 7) and idx.min() >= 0 and idx.max() < 1 << bits
    assert container.fsq_codes(idx, levels).shape == (1, len(levels), 6, 7)


def test_z_levels_must_be_powers_of_two():
    for levels in ((5, 4), (1, 4), ()):
        with pytest.raises(ValueError):
            container.z_bits(levels)


def test_container_errors(ref):
    _, data, _ = ref
    h, w, y_stream, z_stream = container.parse(data)
    head = data[:container.HEADER_BYTES]
    bad = {
        "empty": b"",
        "too short": data[:10],
        "truncated": data[:-1],
        "extra byte": data + b"\0",
        "caption": head[:12] + (3).to_bytes(4, "big") + data[16:] + b"abc",
        "zero height": (0).to_bytes(4, "big") + data[4:],
        "absurd size": (1 << 20).to_bytes(4, "big") * 2 + data[8:],
        "y length too long": head[:8] + (len(y_stream) + 5).to_bytes(4, "big") + data[12:],
    }
    for case in bad.values():
        _one_line_stream_error(lambda: container.parse(case))
    # a 64x64 image at a 4096-pixel limit passes, one pixel more does not
    z1 = container.pack_z([5])
    assert container.parse(container.write(64, 64, b"", [[5]]), max_pixels=4096)[:2] == (64, 64)
    _one_line_stream_error(lambda: container.parse(container.write(64, 65, b"", [[5, 6]]), max_pixels=4096))
    # nonzero pad bits of the z-stream: 14 bits in 2 bytes leave 2
    _one_line_stream_error(lambda: container.unpack_z(bytes([z1[0] | 0x80, z1[1]]), 1))
    _one_line_stream_error(lambda: container.unpack_z(z_stream[:-1], 6))
    with pytest.raises(ValueError):
        container.write(h, w, y_stream, np.zeros((1, 1, 1), dtype=np.int32))


# --------------------------------------------------------------------------- #
# Gaussian model
# --------------------------------------------------------------------------- #
def test_cdf_table_identical():
    ref = np.load(FIXTURE / "cdf.npz")
    cdfs = gaussian.build_cdfs()
    for key in ("quantized_cdf", "cdf_length", "offset"):
        got = getattr(cdfs, key)
        assert got.dtype == ref[key].dtype and np.array_equal(got, ref[key]), key
    assert gaussian.build_cdfs() is cdfs  # cached
    assert gaussian.LOG_SCALE_MIN == float(ref["log_scale_min"])
    assert gaussian.LOG_SCALE_STEP == float(ref["log_scale_step"])
    # torch's float32 exp (SLEEF) rounds entry 108 one ulp low; every other entry is identical
    table, ref_table = gaussian.scale_table(), ref["scale_table"]
    assert np.flatnonzero(table != ref_table).tolist() == [108]
    assert table[108] == np.nextafter(ref_table[108], np.float32(2))


def test_scale_indices_identical(ref):
    _, _, st = ref
    for k in range(4):
        got = gaussian.scale_indices(st[f"pass{k}_scales_r"])
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, st[f"pass{k}_scale_index"])


def test_scale_indices_edges():
    s = np.array([-3.0, 0.0, 1e-5, 0.11, 0.1101, 64.0, 1e9, np.inf], dtype=np.float32)
    assert gaussian.scale_indices(s).tolist() == [0, 0, 0, 0, 0, 255, 255, 255]
    # the table's own scales land in their own bins or (float32 rounding) one below
    got = gaussian.scale_indices(gaussian.scale_table())
    assert np.all((got == np.arange(256)) | (got == np.arange(256) - 1))
    with pytest.raises(ValueError):
        gaussian.scale_indices(np.array([np.nan], dtype=np.float32))


# --------------------------------------------------------------------------- #
# Four-pass y coding against the fixture
# --------------------------------------------------------------------------- #
def test_pass_masks(ref):
    _, _, st = ref
    n, h, w = st["y_hat"].shape[1:]
    masks = passes.pass_masks(n, h, w)
    for k in range(4):
        np.testing.assert_array_equal(masks[k], st[f"pass{k}_mask"][0].astype(bool))
    np.testing.assert_array_equal(np.sum(masks, axis=0), np.ones((n, h, w)))
    odd = passes.pass_masks(8, 3, 5)  # odd sizes: the 2x2 pattern cropped
    np.testing.assert_array_equal(np.sum(odd, axis=0), np.ones((8, 3, 5)))
    assert odd[0][0].tolist()[0] == [True, False, True, False, True]


def test_decode_y_matches_reference(ref, backend):
    _, data, st = ref
    _, _, y_stream, _ = container.parse(data)
    n, h, w = st["y_hat"].shape[1:]
    y_hat, record = passes.decode_y(rans.RansReader(y_stream), _fake_prior(st), n, h, w)
    # bit-identical, signed zeros included; decode_y's finish() checked the stream ended exactly
    assert y_hat.dtype == np.float32 and np.array_equal(_bits(y_hat), _bits(st["y_hat"]))
    for k, rec in enumerate(record):
        np.testing.assert_array_equal(rec.symbols, st[f"pass{k}_symbols"])
        np.testing.assert_array_equal(rec.scale_index, st[f"pass{k}_scale_index"])
        assert np.array_equal(_bits(rec.scales_r), _bits(st[f"pass{k}_scales_r"]))


def test_encode_y_matches_reference(ref, backend):
    _, data, st = ref
    h_img, w_img, y_stream, _ = container.parse(data)
    n, h, w = st["y_hat"].shape[1:]
    enc_seen, dec_seen = [], []
    stream, y_hat, record = passes.encode_y(st["enc_y"], _fake_prior(st, enc_seen), n, h, w)
    for k, rec in enumerate(record):
        np.testing.assert_array_equal(rec.symbols, st[f"enc_pass{k}_symbols"])
        np.testing.assert_array_equal(rec.scale_index, st[f"enc_pass{k}_scale_index"])
    assert stream == y_stream
    assert np.array_equal(_bits(y_hat), _bits(st["y_hat"]))
    assert container.write(h_img, w_img, stream, st["enc_z_indices"]) == data
    # the prior saw the same y_hat so far on both sides (up to the sign of zeros, as in OneDC)
    passes.decode_y(rans.RansReader(stream), _fake_prior(st, dec_seen), n, h, w)
    assert all(np.array_equal(a, b) for a, b in zip(enc_seen, dec_seen))


def test_z_only_variant(ref):
    _, _, st = ref
    n, h, w = st["y_hat"].shape[1:]
    y_hat, record = passes.decode_y(None, _fake_prior(st), n, h, w, z_only=True)
    expected = sum(st[f"prior{k}_means"] * st[f"pass{k}_mask"] for k in range(4))
    np.testing.assert_array_equal(y_hat, expected)
    assert all((r.scale_index == -1).all() and (r.symbols == 0).all() for r in record)
    with pytest.raises(ValueError):
        passes.decode_y(None, _fake_prior(st), n, h, w)


# --------------------------------------------------------------------------- #
# Corrupt y-streams
# --------------------------------------------------------------------------- #
def _decode_all(stream, idx):
    reader = rans.RansReader(stream)
    out = reader.decode(idx)
    reader.finish()
    return out


def test_y_stream_too_short_or_foreign():
    idx = np.zeros(3, dtype=np.int32)
    for data in (b"", b"\x01", b"\x01\x00\x00\x80", b"\x11" + rans.RANS_L.to_bytes(4, "little"),
                 b"\x01" + (1).to_bytes(4, "little"), b"\x01" + (1 << 31).to_bytes(4, "little")):
        _one_line_stream_error(lambda: _decode_all(data, idx))
    # the empty stream: five bytes, nothing to decode
    empty = rans.encode(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32))
    assert empty == b"\x01" + rans.RANS_L.to_bytes(4, "little")
    assert _decode_all(empty, idx[:0]).size == 0
    _one_line_stream_error(lambda: _decode_all(empty, idx))


def test_y_stream_truncated_or_extended(ref, backend):
    _, data, st = ref
    _, _, y_stream, _ = container.parse(data)
    idx = _indices(st)
    for cut in (5, 6, len(y_stream) // 2, len(y_stream) - 1):
        msg = _one_line_stream_error(lambda: _decode_all(y_stream[:cut], idx))
        assert "truncated" in msg or "corrupted" in msg
    _one_line_stream_error(lambda: _decode_all(y_stream + b"\0", idx))
    _one_line_stream_error(lambda: _decode_all(y_stream, idx[:-1]))  # bytes (or state) left over


def test_y_stream_bit_flips(ref):
    """Nearly every flip is caught. rANS has no redundancy beyond its final state, so a flip that only
    moves one symbol's slot to another symbol of the same frequency (the frequency-1 symbols of the
    small-scale CDFs) or flips a raw bypass chunk (stored verbatim) changes that one symbol and
    nothing else."""
    _, data, st = ref
    _, _, y_stream, _ = container.parse(data)
    idx = _indices(st)
    clean = _decode_all(y_stream, idx)
    cdfs = gaussian.build_cdfs()

    def freq(values):
        v = values - cdfs.offset[idx]
        tail = cdfs.cdf_length[idx] - 2
        v = np.where((v < 0) | (v >= tail), tail, v)
        rows = cdfs.quantized_cdf[idx]
        return np.take_along_axis(rows, v[:, None] + 1, 1) - np.take_along_axis(rows, v[:, None], 1)

    caught = 0
    for pos in range(len(y_stream)):
        flipped = bytearray(y_stream)
        flipped[pos] ^= 1 << (pos % 8)
        try:
            got = _decode_all(bytes(flipped), idx)
        except StreamError as e:
            assert "\n" not in str(e)
            caught += 1
            continue
        changed = np.flatnonzero(got != clean)
        assert changed.size == 1, f"undetected flip at byte {pos}"
        assert freq(got)[changed[0]] == freq(clean)[changed[0]], f"undetected flip at byte {pos}"
    assert caught > 0.97 * len(y_stream)


def test_y_stream_garbage_raises_only_stream_error(backend):
    rng = np.random.default_rng(11)
    idx = rng.integers(0, 256, 3000).astype(np.int32)
    for _ in range(50):
        body = rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes()
        state = int(rng.integers(rans.RANS_L, 1 << 31)).to_bytes(4, "little")
        _one_line_stream_error(lambda: _decode_all(b"\x01" + state + body, idx))


# --------------------------------------------------------------------------- #
# Random round trips
# --------------------------------------------------------------------------- #
def _random_symbols(rng, n):
    """Indices covering 0..255, symbols mostly from the scale's Gaussian, escapes both ways."""
    cdfs = gaussian.build_cdfs()
    idx = np.concatenate([np.arange(256), rng.integers(0, 256, n - 256)]).astype(np.int32)
    rng.shuffle(idx)
    sym = np.rint(rng.normal(0, 1.5 * gaussian.scale_table()[idx])).astype(np.int64)
    # the edges of each CDF's range: -c - 1 and c + 1 escape (raw 1 and 0), -c and c do not
    c = -cdfs.offset[idx]
    edge = rng.integers(0, n, n // 20)
    sym[edge] = (c[edge] + rng.integers(0, 2, edge.size)) * rng.choice([-1, 1], edge.size)
    far = rng.integers(0, n, n // 50)  # long bypasses, up to the +-30000 limit (8 chunks)
    sym[far] = rng.integers(-rans.SYMBOL_LIMIT, rans.SYMBOL_LIMIT + 1, far.size)
    sym[:4] = [rans.SYMBOL_LIMIT, -rans.SYMBOL_LIMIT, rans.SYMBOL_LIMIT - 1, -rans.SYMBOL_LIMIT + 1]
    return np.clip(sym, -rans.SYMBOL_LIMIT, rans.SYMBOL_LIMIT).astype(np.int32), idx


def test_round_trip_random(backend):
    rng = np.random.default_rng(2024)
    sym, idx = _random_symbols(rng, 60_000)
    cdfs = gaussian.build_cdfs()
    v = sym - cdfs.offset[idx]
    assert (v < 0).sum() > 500 and (v >= cdfs.cdf_length[idx] - 2).sum() > 500  # escapes both ways
    data = rans.encode(sym, idx)
    # decode in uneven chunks from one reader
    reader = rans.RansReader(data)
    cuts = [0, 1, 7, 1000, 25_000, 59_999, 60_000]
    parts = [reader.decode(idx[a:b]) for a, b in zip(cuts, cuts[1:])]
    reader.finish()
    out = np.concatenate(parts)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, sym)


def test_backends_agree(monkeypatch):
    if not rans._JIT:
        pytest.skip("numba is not installed")
    rng = np.random.default_rng(7)
    sym, idx = _random_symbols(rng, 5000)
    jit_stream = rans.encode(sym, idx)
    monkeypatch.setattr(rans, "_JIT", False)
    monkeypatch.setattr(rans, "_encode_impl", rans._encode_loop)
    assert rans.encode(sym, idx) == jit_stream


def test_encode_rejects_bad_input():
    ok = np.zeros(2, dtype=np.int32)
    for sym, idx in ((np.array([0, 30001]), ok), (ok, np.array([0, 256])), (ok, np.array([-1, 0])),
                     (np.zeros(3, dtype=np.int32), ok), (ok.astype(np.float32), ok)):
        with pytest.raises(ValueError):
            rans.encode(sym, idx)


def test_passes_round_trip_random():
    """encode_y -> decode_y with a prior that depends on y_hat so far, including escapes."""
    rng = np.random.default_rng(5)
    n, h, w = 16, 6, 10
    weights = rng.normal(0, 0.3, (4, n, n)).astype(np.float32)

    def prior(k, y_hat):
        mix = np.einsum("ij,bjhw->bihw", weights[k], y_hat).astype(np.float32)
        scales = (np.abs(mix) + np.float32(0.05 + 0.5 * k)).astype(np.float32)
        return scales, (mix * np.float32(0.5)).astype(np.float32)

    y = rng.normal(0, 3, (1, n, h, w)).astype(np.float32)
    y[0, :, 0, 0] = 500.0  # escapes
    stream, y_hat, enc_record = passes.encode_y(y, prior, n, h, w)
    dec_hat, dec_record = passes.decode_y(rans.RansReader(stream), prior, n, h, w)
    assert np.array_equal(_bits(dec_hat), _bits(y_hat))
    for a, b in zip(enc_record, dec_record):
        np.testing.assert_array_equal(a.symbols, b.symbols)
    assert np.abs(y_hat - y).max() <= 0.5 + 1e-4
