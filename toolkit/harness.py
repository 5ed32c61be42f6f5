"""The one evaluation harness: decode a set of cases with a decoder, measure against the originals
and/or a reference decoder, and summarise per rate, in one row schema.

Everything that asks "how good is this decoder" goes through `compare`: `eval`, its ablation,
training's validation, export parity, the pipeline's verification, INT8 quality, QAT and
accuracy-controlled PTQ. A decoder here is any callable case -> output, where an output is either an
H x W x 3 uint8 image or a raw graph output (1, 3, Hp, Wp) float in [0, 1]; raw outputs are compared
as floats (max |diff|) as well as 8-bit images.

Row keys: name, rate, width, height, and where they apply bytes, bpp (whole stream), psnr and
ms_ssim (against the original), psnr_vs_reference, max_abs_vs_reference, psnr_reference (the
reference against the original). PSNRs are capped at PSNR_CAP (identical images; JSON has no inf).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .coding import encode_rates
from .frames import to_image
from .metrics import MsSsim, bpp, mean_or_none, psnr

PSNR_CAP = 100.0


@dataclass
class Case:
    """One thing to decode: a stream (`data`) or ready graph inputs (`inputs`), the rate it codes,
    and the original image it was made from (H x W x 3 uint8)."""

    name: str
    rate: int
    original: np.ndarray
    data: bytes | None = None
    inputs: object = None
    extra: dict = field(default_factory=dict)


def encode_cases(encoder, images: Iterable[tuple[str, np.ndarray]], rates: list[int], seeds: int = 1) -> list[Case]:
    """One case per image and rate, image-major, one encoder pass per image (coding.encode_rates);
    `encoder` is a runtime (runtimes.Decoder). A seed search's decode of the chosen seed rides along
    in `case.extra["image"]`."""
    cases = []
    for name, rgb in images:
        for rate, enc in encode_rates(encoder, rgb, rates, seeds=seeds).items():
            cases.append(Case(name, rate, rgb, enc.data, extra={} if enc.image is None else {"image": enc.image}))
    return cases


def as_image(out: np.ndarray, height: int, width: int) -> np.ndarray:
    return out if out.dtype == np.uint8 and out.ndim == 3 else to_image(out, height, width)


def capped_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return min(psnr(a, b), PSNR_CAP)


def compare(cases: Iterable[Case], decode: Callable[[Case], np.ndarray],
            reference: Callable[[Case], np.ndarray] | None = None, with_ms_ssim: bool = False,
            label: dict | None = None, on_output: Callable[[Case, np.ndarray], None] | None = None,
            progress: Callable[[], None] | None = None) -> list[dict]:
    """One row per case (see the module docstring), each with `label` merged in."""
    rows, ms_ssim_of = [], None
    for case in cases:
        h, w = case.original.shape[:2]
        out = decode(case)
        image = as_image(out, h, w)
        if on_output is not None:
            on_output(case, image)
        row = {**(label or {}), "name": case.name, "rate": case.rate, "width": w, "height": h}
        if case.data is not None:
            row.update(bytes=len(case.data), bpp=bpp(len(case.data), h, w))
        row["psnr"] = capped_psnr(case.original, image)
        if with_ms_ssim:  # the original's statistics serve every case of it in a row (image-major cases)
            if ms_ssim_of is None or ms_ssim_of.original is not case.original:
                ms_ssim_of = MsSsim(case.original)
            row["ms_ssim"] = ms_ssim_of(image)
        if reference is not None:
            ref = reference(case)
            ref_image = as_image(ref, h, w)
            row["psnr_vs_reference"] = capped_psnr(ref_image, image)
            raw = out.dtype != np.uint8 and ref.dtype != np.uint8
            diff = np.abs(out.astype(np.float64) - ref) if raw else np.abs(image.astype(int) - ref_image)
            row["max_abs_vs_reference"] = float(diff.max()) if raw else int(diff.max())
            row["psnr_reference"] = capped_psnr(case.original, ref_image)
        rows.append(row)
        if progress is not None:
            progress()
    return rows


SUMMARY_KEYS = ("bpp", "psnr", "ms_ssim", "psnr_vs_reference", "psnr_reference")


def summarize(rows: list[dict], keys: Iterable[str] = SUMMARY_KEYS) -> dict:
    """Means of the keys the rows carry (None where no row has a finite value)."""
    return {k: mean_or_none(r.get(k) for r in rows) for k in keys if any(k in r for r in rows)}


def per_rate(rows: list[dict], keys: Iterable[str] = SUMMARY_KEYS) -> list[dict]:
    rates = sorted({r["rate"] for r in rows})
    return [{"rate": rate, **summarize([r for r in rows if r["rate"] == rate], keys)} for rate in rates]


__all__ = ["PSNR_CAP", "Case", "as_image", "capped_psnr", "compare", "encode_cases", "per_rate", "summarize"]
