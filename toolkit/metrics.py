"""Image-quality and rate metrics, all on 8-bit RGB.

``psnr`` and ``bpp`` need only numpy. ``ms_ssim`` imports torch lazily (the ``torch`` extra), so
importing this module stays cheap on edge installs.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .errors import ImageError, RuntimeUnavailable

__all__ = ["psnr", "ms_ssim", "MsSsim", "bpp", "mean_or_none", "MS_SSIM_MIN_SIDE"]

MS_SSIM_MIN_SIDE = 161
"""Smallest short side ms_ssim accepts: 5 scales with an 11-tap window need > (11-1)*2**4 = 160."""


def _check_pair(a: np.ndarray, b: np.ndarray, what: str) -> None:
    for name, x in (("first", a), ("second", b)):
        if not isinstance(x, np.ndarray):
            raise ImageError(f"{what}: {name} image is not a numpy array ({type(x).__name__})")
        if x.ndim != 3 or x.shape[2] != 3:
            raise ImageError(f"{what}: {name} image must be H x W x 3, got shape {x.shape}")
        if x.dtype != np.uint8:
            raise ImageError(f"{what}: {name} image must be uint8, got {x.dtype}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ImageError(f"{what}: {name} image is empty, shape {x.shape}")
    if a.shape != b.shape:
        h1, w1 = a.shape[:2]
        h2, w2 = b.shape[:2]
        raise ImageError(f"{what}: images differ in size ({w1}x{h1} vs {w2}x{h2})")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two H x W x 3 ``uint8`` RGB images.

    Computed on the 8-bit RGB values: MSE over all pixels and channels, then
    ``10 * log10(255**2 / MSE)``. Identical images give ``float('inf')``.
    """
    _check_pair(a, b, "psnr")
    diff = a.astype(np.int32) - b.astype(np.int32)
    mse = float(np.mean(np.square(diff, dtype=np.int64), dtype=np.float64))
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(255.0**2 / mse)


def ms_ssim_available() -> bool:
    """Whether ms_ssim can run here (an edge install without torch reports MS-SSIM as n/a)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Multi-scale SSIM between two H x W x 3 ``uint8`` RGB images, in [0, 1].

    pytorch_msssim's ``ms_ssim`` with ``data_range=255``: the standard 11-tap Gaussian window
    (sigma 1.5), K = (0.01, 0.03), 5 scales with its weights, on the 8-bit RGB values (as float32,
    averaged over the three channels). The 4 downsamplings need a short side > 160 px, so **images
    whose shorter side is <= 160 px give ``None``** rather than an error: callers should report
    "n/a" and leave them out of averages (:func:`mean_or_none` does). Identical images give exactly 1.0.

    torch is imported lazily; without it a :class:`~edgecodec.errors.RuntimeUnavailable` names the
    extra to install. To measure several images against one original, use :class:`MsSsim`.
    """
    return MsSsim(a)(b)


class MsSsim:
    """MS-SSIM against one original, whose filtered statistics (its mean and second moment at every
    scale) are computed once for any number of images: `eval` measures every rate of an image against
    the same original. pytorch_msssim's math, step for step (the test suite checks the values against
    it); written out here only to keep those statistics and to filter the three maps of a compared
    image in one grouped convolution, together 2-3x faster at Kodak's size."""

    WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def __init__(self, original: np.ndarray):
        self.original = original
        self.scales: list | None = None  # per scale: (X, mu1, filtered X*X), made on first use

    def __call__(self, image: np.ndarray) -> float | None:
        a = self.original
        _check_pair(a, image, "ms_ssim")
        if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
            return None
        if np.array_equal(a, image):
            return 1.0
        torch, F = self._torch()
        with torch.no_grad():
            if self.scales is None:
                self.scales = self._reference(torch, F)
            Y, factors = self._tensor(torch, image), []
            for i, (X, mu1, xx) in enumerate(self.scales):
                mu2, yy, xy = self._filter(torch, F, torch.cat([Y, Y * Y, X * Y], 1)).split(3, 1)
                mu1_sq, mu2_sq, mu1_mu2 = mu1.pow(2), mu2.pow(2), mu1 * mu2
                sigma1_sq, sigma2_sq, sigma12 = 1.0 * (xx - mu1_sq), 1.0 * (yy - mu2_sq), 1.0 * (xy - mu1_mu2)
                cs_map = (2 * sigma12 + self.C2) / (sigma1_sq + sigma2_sq + self.C2)
                if i < len(self.scales) - 1:
                    factors.append(torch.relu(torch.flatten(cs_map, 2).mean(-1)))
                    Y = F.avg_pool2d(Y, kernel_size=2, padding=[s % 2 for s in Y.shape[2:]])
                else:
                    ssim_map = ((2 * mu1_mu2 + self.C1) / (mu1_sq + mu2_sq + self.C1)) * cs_map
                    factors.append(torch.relu(torch.flatten(ssim_map, 2).mean(-1)))
            weights = torch.tensor(self.WEIGHTS)
            value = torch.prod(torch.stack(factors, dim=0) ** weights.view(-1, 1, 1), dim=0).mean()
        result = float(value.item())
        if not math.isfinite(result):  # pragma: no cover - the relu keeps every factor >= 0
            return None
        return min(max(result, 0.0), 1.0)

    @staticmethod
    def _torch():
        try:
            import torch
            import torch.nn.functional as F
        except ImportError as exc:
            raise RuntimeUnavailable(f"MS-SSIM needs torch ({exc.name or exc} is missing): "
                                     "pip install edgecodec[torch]") from None
        return torch, F

    @staticmethod
    def _tensor(torch, x: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).unsqueeze(0).float()

    @staticmethod
    def _filter(torch, F, x):
        """pytorch_msssim's gaussian_filter: the 11-tap window along H, then W, each channel apart."""
        coords = torch.arange(11, dtype=torch.float) - 11 // 2
        g = torch.exp(-(coords ** 2) / (2 * 1.5 ** 2))
        g = (g / g.sum()).view(1, 1, 1, 11).repeat(x.shape[1], 1, 1, 1)
        x = F.conv2d(x, g.transpose(2, 3), groups=x.shape[1])
        return F.conv2d(x, g, groups=x.shape[1])

    def _reference(self, torch, F) -> list:
        X, out = self._tensor(torch, self.original), []
        for i in range(len(self.WEIGHTS)):
            mu1, xx = self._filter(torch, F, torch.cat([X, X * X], 1)).split(3, 1)
            out.append((X, mu1, xx))
            X = F.avg_pool2d(X, kernel_size=2, padding=[s % 2 for s in X.shape[2:]])
        return out


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel: ``num_bytes * 8 / (height * width)``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"bpp: height and width must be positive, got {height}x{width}")
    if num_bytes < 0:
        raise ValueError(f"bpp: num_bytes must be >= 0, got {num_bytes}")
    return num_bytes * 8 / (height * width)


def mean_or_none(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None and finite; None if there are none.

    Infinite PSNRs (identical images) and None MS-SSIMs (images too small) are
    therefore left out of the average rather than poisoning it.
    """
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not kept:
        return None
    return math.fsum(kept) / len(kept)
