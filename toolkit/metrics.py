"""Image-quality and rate metrics, all on 8-bit RGB.

``psnr`` and ``bpp`` need only numpy. ``ms_ssim`` imports torch and pytorch_msssim
lazily (the ``torch`` extra), so importing this module stays cheap on edge installs.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .errors import ImageError, RuntimeUnavailable

__all__ = ["psnr", "ms_ssim", "bpp", "mean_or_none", "MS_SSIM_MIN_SIDE"]

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

    return all(importlib.util.find_spec(m) is not None for m in ("torch", "pytorch_msssim"))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Multi-scale SSIM between two H x W x 3 ``uint8`` RGB images, in [0, 1].

    Uses ``pytorch_msssim.ms_ssim`` with ``data_range=255``, the standard 11-tap
    Gaussian window (sigma 1.5) and 5 scales, on the 8-bit RGB values (as float32,
    averaged over the three channels). The 4 downsamplings need a short side
    > 160 px, so **images whose shorter side is <= 160 px give ``None``** rather
    than an error: callers should report "n/a" and leave them out of averages
    (:func:`mean_or_none` does). Identical images give exactly 1.0.

    torch and pytorch_msssim are imported here, lazily; when either is missing a
    :class:`~edgecodec.errors.RuntimeUnavailable` names the extra to install.
    """
    _check_pair(a, b, "ms_ssim")
    if min(a.shape[0], a.shape[1]) < MS_SSIM_MIN_SIDE:
        return None
    if np.array_equal(a, b):
        return 1.0
    try:
        import torch
        from pytorch_msssim import ms_ssim as _ms_ssim
    except ImportError as exc:
        raise RuntimeUnavailable(
            f"MS-SSIM needs torch and pytorch-msssim ({exc.name or exc} is missing): "
            "pip install edgecodec[torch]"
        ) from None

    def to_tensor(x: np.ndarray) -> "torch.Tensor":
        return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1).unsqueeze(0).float()

    with torch.no_grad():
        value = _ms_ssim(to_tensor(a), to_tensor(b), data_range=255, size_average=True)
    result = float(value.item())
    if not math.isfinite(result):  # pragma: no cover - pytorch_msssim clamps with relu
        return None
    return min(max(result, 0.0), 1.0)


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
