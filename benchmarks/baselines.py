"""JPEG and WebP from Pillow as reference points: the bpp each needs to match a PSNR.

For each image and target PSNR we search the encoder's quality setting (binary search: PSNR grows
with quality) for the smallest file whose PSNR reaches the target. When even the lowest quality
beats the target, the codec cannot go that low: we report its lowest reachable bpp and count the
image as "at floor".
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from edgecodec.metrics import bpp, psnr

QUALITY_RANGE = {"jpeg": (1, 100), "webp": (0, 100)}
# quality settings for a rate-distortion curve in the range these codecs reach near our bpp
RD_QUALITIES = {"jpeg": (1, 2, 3, 5, 8), "webp": (0, 2, 5, 10)}


class RDCurve:
    """Lazily evaluated (bpp, PSNR) per quality setting of one codec on one image."""

    def __init__(self, rgb: np.ndarray, fmt: str):
        self.rgb, self.fmt = rgb, fmt
        self._points: dict[int, tuple[float, float]] = {}

    def at(self, quality: int) -> tuple[float, float]:
        if quality not in self._points:
            data, dec = self.code(quality)
            self._points[quality] = (bpp(len(data), *self.rgb.shape[:2]), psnr(self.rgb, dec))
        return self._points[quality]

    def code(self, quality: int) -> tuple[bytes, np.ndarray]:
        buf = io.BytesIO()
        img = Image.fromarray(self.rgb)
        if self.fmt == "jpeg":
            img.save(buf, format="JPEG", quality=quality, optimize=True)
        else:
            img.save(buf, format="WEBP", quality=quality)
        data = buf.getvalue()
        return data, np.array(Image.open(io.BytesIO(data)).convert("RGB"))

    def bpp_to_reach(self, target_psnr: float) -> tuple[float, bool]:
        """(bpp, at_floor): the smallest quality reaching the target, or the lowest quality."""
        lo, hi = QUALITY_RANGE[self.fmt]
        if self.at(lo)[1] >= target_psnr:
            return self.at(lo)[0], True
        if self.at(hi)[1] < target_psnr:
            return self.at(hi)[0], False  # cannot reach it at all (not expected at these PSNRs)
        while hi - lo > 1:  # invariant: at(lo) below the target, at(hi) reaching it
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.at(mid)[1] < target_psnr else (lo, mid)
        return self.at(hi)[0], False


def compare(images: dict[str, np.ndarray], rows: list[dict]) -> list[dict]:
    """Per rate: the mean bpp JPEG / WebP need to reach our PSNR on each image (rows from evaluate())."""
    curves = {(name, fmt): RDCurve(rgb, fmt) for name, rgb in images.items() for fmt in QUALITY_RANGE}
    out = []
    for rate in sorted({r["rate"] for r in rows}):
        mine = [r for r in rows if r["rate"] == rate]
        entry = {"rate": rate, "ours_bpp": float(np.mean([r["bpp"] for r in mine])),
                 "ours_psnr": float(np.mean([r["psnr"] for r in mine]))}
        for fmt in QUALITY_RANGE:
            found = [curves[r["name"], fmt].bpp_to_reach(r["psnr"]) for r in mine]
            entry[f"{fmt}_bpp"] = float(np.mean([b for b, _ in found]))
            entry[f"{fmt}_at_floor"] = sum(1 for _, f in found if f)
        out.append(entry)
    return out


def rd_points(images: dict[str, np.ndarray], fmt: str, qualities=None) -> list[dict]:
    """The codec's rate-distortion curve on these images: per quality setting, mean bpp, PSNR, MS-SSIM."""
    from edgecodec.metrics import mean_or_none, ms_ssim

    out = []
    for q in qualities or RD_QUALITIES[fmt]:
        rows = []
        for rgb in images.values():
            data, dec = RDCurve(rgb, fmt).code(q)
            rows.append((bpp(len(data), *rgb.shape[:2]), psnr(rgb, dec), ms_ssim(rgb, dec)))
        out.append({"quality": q, "bpp": float(np.mean([r[0] for r in rows])),
                    "psnr": mean_or_none(r[1] for r in rows), "ms_ssim": mean_or_none(r[2] for r in rows)})
    return out
