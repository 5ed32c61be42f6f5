"""Rate-distortion evaluation: encode every image at every requested rate, decode, measure.

One JSON schema for `edgecodec eval`, the demo and (later) the pipeline report:
{"model", "runtime", "mean": {"bpp", "psnr", "ms_ssim"}, "per_rate": [...], "images": [...]}.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .coding import encode_image
from .metrics import bpp, mean_or_none, ms_ssim, psnr
from .weights import LoadedModel


def evaluate(loaded: LoadedModel, decoder, images: Iterable[tuple[str, np.ndarray]], rates: list[int],
             on_stream: Callable[[str, int, bytes, np.ndarray], None] | None = None,
             progress: Callable[[], None] | None = None) -> dict:
    rows = []
    for name, rgb in images:
        h, w = rgb.shape[:2]
        for rate in rates:
            data = encode_image(loaded.codec, rgb, rate)
            out = decoder.decode(data)
            if on_stream is not None:
                on_stream(name, rate, data, out)
            rows.append({"name": name, "rate": rate, "width": w, "height": h, "bytes": len(data),
                         "bpp": bpp(len(data), h, w), "psnr": psnr(rgb, out), "ms_ssim": ms_ssim(rgb, out)})
            if progress is not None:
                progress()
    return {
        "model": {"name": loaded.name, "source": loaded.source, "trained": loaded.trained},
        "runtime": decoder.info.to_json(),
        "mean": summarize(rows),
        "per_rate": [{"rate": r, **summarize([x for x in rows if x["rate"] == r])} for r in rates],
        "images": rows,
    }


def ablation(loaded: LoadedModel, images: Iterable[tuple[str, np.ndarray]], rates: list[int]) -> list[dict]:
    """Per rate: PSNR of the full decode versus the dequantized latent straight through the pixel
    decoder (no denoiser), both in torch on the same streams."""
    import torch

    from . import bitstream
    from .frames import to_image
    from .noise import portable_noise

    codec = loaded.codec.eval()
    spec = codec.stream_spec()
    out = []
    for rate in rates:
        full, plain = [], []
        for _, rgb in images:
            h, w = rgb.shape[:2]
            parsed = bitstream.parse(encode_image(codec, rgb, rate), spec)
            idx = torch.from_numpy(parsed.indices)
            noise = torch.from_numpy(portable_noise(parsed.header.seed, (1, spec.latent_channels) + idx.shape[2:]))
            with torch.no_grad():
                full.append(psnr(rgb, to_image(codec.decode_graph(idx, noise, rate).numpy(), h, w)))
                plain.append(psnr(rgb, to_image(codec.decode_without_denoiser(idx).numpy(), h, w)))
        out.append({"rate": rate, "psnr_with_denoiser": float(np.mean(full)),
                    "psnr_without_denoiser": float(np.mean(plain)),
                    "gain_db": float(np.mean(full) - np.mean(plain))})
    return out


def summarize(rows: list[dict]) -> dict:
    return {k: mean_or_none(x[k] for x in rows) for k in ("bpp", "psnr", "ms_ssim")}


def parse_rates(text: str, num_rates: int) -> list[int]:
    from .errors import EdgecodecError

    if text == "all":
        return list(range(num_rates))
    try:
        rates = [int(x) for x in text.split(",")]
    except ValueError:
        raise EdgecodecError(f"--rate must be an integer, a comma list or 'all', not {text!r}") from None
    bad = [r for r in rates if not 0 <= r < num_rates]
    if bad:
        raise EdgecodecError(f"rate {bad[0]} is not offered (rates 0..{num_rates - 1})")
    return rates
