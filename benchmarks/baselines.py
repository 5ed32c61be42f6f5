"""JPEG and WebP from Pillow as reference points: the bpp each needs to match a PSNR.

For each image and target PSNR we search the encoder's quality setting for the smallest file whose
PSNR reaches the target. When even the lowest quality beats the target, the codec cannot go that
low: we report its lowest reachable bpp and flag it ("floor").
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from edgecodec.metrics import bpp, psnr

QUALITIES = {"jpeg": list(range(1, 101)), "webp": list(range(0, 101))}


@dataclass(frozen=True)
class Point:
    quality: int
    bpp: float
    psnr: float


def _encode(rgb: np.ndarray, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(rgb)
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        img.save(buf, format="WEBP", quality=quality, method=6)
    return buf.getvalue()


def curve(rgb: np.ndarray, fmt: str) -> list[Point]:
    """The codec's rate-distortion points for one image (every quality setting)."""
    return _curve(rgb.tobytes(), rgb.shape, fmt)


@lru_cache(maxsize=64)
def _curve(raw: bytes, shape: tuple, fmt: str) -> list[Point]:
    rgb = np.frombuffer(raw, np.uint8).reshape(shape)
    h, w = shape[:2]
    points = []
    for q in QUALITIES[fmt]:
        data = _encode(rgb, fmt, q)
        dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        points.append(Point(q, bpp(len(data), h, w), psnr(rgb, dec)))
    return points


def bpp_to_reach(rgb: np.ndarray, fmt: str, target_psnr: float) -> tuple[float, bool]:
    """(bpp, at_floor): the smallest file reaching target_psnr, or the smallest file at all."""
    points = curve(rgb, fmt)
    reaching = [p for p in points if p.psnr >= target_psnr]
    smallest = min(points, key=lambda p: p.bpp)
    if not reaching:
        best = max(points, key=lambda p: p.psnr)
        return best.bpp, False
    pick = min(reaching, key=lambda p: p.bpp)
    return pick.bpp, pick.bpp <= smallest.bpp


def compare(images: dict[str, np.ndarray], rows: list[dict]) -> list[dict]:
    """Per rate: mean bpp JPEG / WebP need to reach our PSNR on each image (rows from evaluate())."""
    out = []
    for rate in sorted({r["rate"] for r in rows}):
        mine = [r for r in rows if r["rate"] == rate]
        entry = {"rate": rate, "ours_bpp": float(np.mean([r["bpp"] for r in mine])),
                 "ours_psnr": float(np.mean([r["psnr"] for r in mine]))}
        for fmt in ("jpeg", "webp"):
            found = [bpp_to_reach(images[r["name"]], fmt, r["psnr"]) for r in mine]
            entry[f"{fmt}_bpp"] = float(np.mean([b for b, _ in found]))
            entry[f"{fmt}_at_floor"] = sum(1 for _, f in found if f)
        out.append(entry)
    return out
