"""Rate-distortion evaluation: encode every image at every requested rate, decode, measure.

One JSON schema for `edgecodec eval`, the demo and the pipeline report:
{"model", "runtime", "mean": {"bpp", "psnr", "ms_ssim"}, "per_rate": [...], "images": [...]}.
The measuring is the harness's (edgecodec.harness); this module only makes the streams.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from edgecodec.coding import encode_image
from edgecodec.errors import EdgecodecError
from edgecodec.harness import Case, compare, per_rate, summarize
from edgecodec.weights import LoadedModel

KEYS = ("bpp", "psnr", "ms_ssim")


def stream_cases(loaded: LoadedModel, images: Iterable[tuple[str, np.ndarray]], rates: list[int]) -> list[Case]:
    return [Case(name, rate, rgb, encode_image(loaded.codec, rgb, rate)) for name, rgb in images for rate in rates]


def evaluate(loaded: LoadedModel, decoder, images: Iterable[tuple[str, np.ndarray]], rates: list[int],
             on_stream: Callable[[str, int, bytes, np.ndarray], None] | None = None,
             progress: Callable[[], None] | None = None) -> dict:
    keep = None if on_stream is None else (lambda c, image: on_stream(c.name, c.rate, c.data, image))
    rows = compare(stream_cases(loaded, images, rates), lambda c: decoder.decode(c.data), with_ms_ssim=True,
                   on_output=keep, progress=progress)
    return {
        "model": {"name": loaded.name, "source": loaded.source, "trained": loaded.trained},
        "runtime": decoder.info.to_json(),
        "mean": summarize(rows, KEYS),
        "per_rate": per_rate(rows, KEYS),
        "images": rows,
    }


def ablation(loaded: LoadedModel, images: Iterable[tuple[str, np.ndarray]], rates: list[int]) -> list[dict]:
    """Per rate: PSNR of the full decode versus each of the family's ablations (for DiffO-style
    models: the dequantized latent straight through the pixel decoder, no denoiser), both in torch
    on the same streams."""
    import torch

    from edgecodec import bitstream
    from edgecodec.noise import portable_noise

    codec = loaded.codec.eval()
    spec = codec.stream_spec()
    cases = stream_cases(loaded, images, rates)
    for case in cases:
        parsed = bitstream.parse(case.data, spec)
        idx = torch.from_numpy(parsed.indices)
        noise = torch.from_numpy(portable_noise(parsed.header.seed, (1, spec.latent_channels) + idx.shape[2:]))
        case.inputs = (idx, noise, parsed.rate)

    def full(case):
        with torch.no_grad():
            return codec.decode_graph(*case.inputs).numpy()

    out = {r["rate"]: {"rate": r["rate"], "psnr_with_denoiser": r["psnr"]}
           for r in per_rate(compare(cases, full), ("psnr",))}
    for name, fn in codec.ablations().items():
        def partial(case, fn=fn):
            with torch.no_grad():
                return fn(case.inputs[0]).numpy()

        for r in per_rate(compare(cases, partial), ("psnr",)):
            out[r["rate"]][f"psnr_{name}"] = r["psnr"]
            out[r["rate"]].setdefault("gain_db", out[r["rate"]]["psnr_with_denoiser"] - r["psnr"])
    return [out[r] for r in rates]


def parse_rates(text: str, num_rates: int) -> list[int]:
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
