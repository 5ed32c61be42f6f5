"""Tests for edgecodec.metrics."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from edgecodec.errors import EdgecodecError, ImageError
from edgecodec.metrics import bpp, mean_or_none, ms_ssim, psnr

RNG = np.random.default_rng(7)


def noise(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def smooth(h: int, w: int) -> np.ndarray:
    """A smooth image (gradients), the kind MS-SSIM is meant for."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 / (w - 1), y * 255 / (h - 1), (x + y) * 255 / (h + w - 2)], axis=-1)
    return np.rint(img).astype(np.uint8)


# --------------------------------------------------------------------------- psnr


def test_psnr_identical_is_inf():
    a = noise(16, 16)
    assert psnr(a, a.copy()) == float("inf")


def test_psnr_offset_of_one():
    a = RNG.integers(0, 255, (16, 20, 3), dtype=np.uint8)
    b = a + 1  # MSE = 1 -> 20*log10(255)
    assert psnr(a, b) == pytest.approx(48.1308036, abs=1e-6)
    assert psnr(b, a) == pytest.approx(48.1308036, abs=1e-6)


def test_psnr_known_mse():
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[0, 0, 0] = 255  # MSE = 255**2 / 48
    assert psnr(a, b) == pytest.approx(10 * math.log10(48))
    assert psnr(a, np.full_like(a, 255)) == pytest.approx(0.0)


def test_psnr_no_uint8_wraparound():
    a = np.zeros((2, 2, 3), dtype=np.uint8)
    b = np.full((2, 2, 3), 10, dtype=np.uint8)
    assert psnr(a, b) == pytest.approx(psnr(b, a))
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))


def test_psnr_returns_float():
    assert type(psnr(noise(8, 8), noise(8, 8))) is float


@pytest.mark.parametrize(
    "a, b",
    [
        (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)),
        (np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32)),
    ],
)
def test_psnr_rejects_bad_inputs(a, b):
    with pytest.raises(ImageError):
        psnr(a, b)


# --------------------------------------------------------------------------- ms_ssim


def test_ms_ssim_none_for_small_images():
    a = noise(128, 128)
    assert ms_ssim(a, a) is None
    assert ms_ssim(noise(160, 400), noise(160, 400)) is None  # short side must be > 160


def test_ms_ssim_identical_is_one():
    a = noise(256, 256)
    assert ms_ssim(a, a.copy()) == 1.0


def test_ms_ssim_noisy_in_range():
    pytest.importorskip("torch")
    a = smooth(256, 256)
    b = np.clip(a.astype(np.int16) + RNG.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    v = ms_ssim(a, b)
    assert isinstance(v, float)
    assert 0.0 < v < 1.0
    # more noise -> lower score
    c = np.clip(a.astype(np.int16) + RNG.integers(-60, 61, a.shape), 0, 255).astype(np.uint8)
    assert ms_ssim(a, c) < v


def test_ms_ssim_just_above_limit():
    pytest.importorskip("torch")
    a = smooth(161, 170)
    b = a.copy()
    b[::7, ::5] ^= 8
    v = ms_ssim(a, b)
    assert v is not None and 0.0 < v <= 1.0


@pytest.mark.parametrize("size", [(161, 170), (200, 263), (512, 768)])
def test_ms_ssim_is_pytorch_msssims_and_keeps_the_original(size):
    """The oracle is pytorch_msssim itself; one MsSsim serves several images of one original."""
    torch = pytest.importorskip("torch")
    oracle = pytest.importorskip("pytorch_msssim").ms_ssim
    from edgecodec.metrics import MsSsim

    a = smooth(*size)
    measure = MsSsim(a)
    for amount in (3, 12, 40):
        b = np.clip(a.astype(np.int16) + RNG.integers(-amount, amount + 1, a.shape), 0, 255).astype(np.uint8)
        t = [torch.from_numpy(x).permute(2, 0, 1)[None].float() for x in (a, b)]
        want = float(oracle(*t, data_range=255))
        assert measure(b) == pytest.approx(want, abs=1e-6) and ms_ssim(a, b) == measure(b)


def test_ms_ssim_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    a = smooth(200, 200)
    b = a.copy()
    b[0, 0, 0] ^= 1
    with pytest.raises(EdgecodecError, match=r"edgecodec\[torch\]"):
        ms_ssim(a, b)


def test_ms_ssim_rejects_size_mismatch():
    with pytest.raises(ImageError):
        ms_ssim(noise(200, 200), noise(200, 201))


# --------------------------------------------------------------------------- bpp / mean


def test_bpp():
    assert bpp(1000, 100, 80) == pytest.approx(1.0)
    assert bpp(0, 10, 10) == 0.0
    assert bpp(3, 2, 3) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        bpp(10, 0, 10)


def test_mean_or_none():
    assert mean_or_none([]) is None
    assert mean_or_none([None, None]) is None
    assert mean_or_none([float("inf"), float("nan"), None]) is None
    assert mean_or_none([1.0, None, 3.0]) == pytest.approx(2.0)
    assert mean_or_none([30.0, float("inf"), 40.0]) == pytest.approx(35.0)
    assert mean_or_none(v for v in [2, 4]) == pytest.approx(3.0)
    assert mean_or_none([np.float32(0.5)]) == pytest.approx(0.5)


def test_baselines_find_the_bpp_for_a_psnr(photo):
    from edgecodec.benchmarks.baselines import RDCurve, compare

    curve = RDCurve(photo, "jpeg")
    bpp_30, floor = curve.bpp_to_reach(30.0)
    assert not floor and curve.bpp_to_reach(34.0)[0] > bpp_30 > 0
    low, floor = curve.bpp_to_reach(5.0)  # below anything JPEG produces: its lowest bpp, flagged
    assert floor and low == curve.at(1)[0]
    rows = [{"name": "a", "rate": 0, "bpp": 0.05, "psnr": 28.0}]
    (entry,) = compare({"a": photo}, rows)
    assert entry["jpeg_bpp"] > 0 and entry["webp_bpp"] > 0 and entry["rate"] == 0
