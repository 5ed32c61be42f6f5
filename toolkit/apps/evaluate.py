"""Rate-distortion evaluation: encode every image at every requested rate, decode, measure.

One JSON schema for `edgecodec eval`, the demo and the pipeline report:
{"model", "runtime", "mean": {"bpp", "psnr", "ms_ssim"}, "per_rate": [...], "images": [...], "timing"}.
The measuring is the harness's (edgecodec.harness); this module only makes the streams, one
encoder pass per image for all its rates (coding.encode_rates).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np

from edgecodec.errors import EdgecodecError
from edgecodec.harness import Case, compare, encode_cases, per_rate, summarize
from edgecodec.metrics import ms_ssim_available

if TYPE_CHECKING:
    from edgecodec.weights import LoadedModel

KEYS = ("bpp", "psnr", "ms_ssim")


def stream_cases(loaded: LoadedModel, images: Iterable[tuple[str, np.ndarray]], rates: list[int],
                 seeds: int = 1) -> list[Case]:
    """Streams of the torch model's encoder (tiled like its decoder above TorchDecoder's tile size)."""
    from edgecodec.runtimes.torch_backend import TorchDecoder

    encoder = TorchDecoder(loaded, device=str(next(loaded.codec.parameters()).device))
    return encode_cases(encoder, images, rates, seeds)


def evaluate(encoder, decoder, images: Iterable[tuple[str, np.ndarray]], rates: list[int],
             on_stream: Callable[[str, int, bytes, np.ndarray], None] | None = None,
             progress: Callable[[], None] | None = None, seeds: int = 1) -> dict:
    """`encoder` and `decoder` are runtimes (runtimes.Decoder): torch, or a bundle's graphs. Where they
    are the same runtime, the seed search's decode of the stored seed is the decode measured."""
    keep = None if on_stream is None else (lambda c, image: on_stream(c.name, c.rate, c.data, image))
    t0 = time.perf_counter()
    cases = encode_cases(encoder, images, rates, seeds)
    encode_s = time.perf_counter() - t0
    decode_s = 0.0

    def decode(case: Case) -> np.ndarray:
        nonlocal decode_s
        if encoder is decoder and "image" in case.extra:
            return case.extra["image"]
        t = time.perf_counter()
        image = decoder.decode(case.data)
        decode_s += time.perf_counter() - t
        return image

    rows = compare(cases, decode, with_ms_ssim=ms_ssim_available(), on_output=keep, progress=progress)
    wall_s = time.perf_counter() - t0
    for row in rows:
        row.setdefault("ms_ssim", None)  # n/a without torch (metrics.ms_ssim_available)
    return {
        "model": encoder.model,
        "runtime": decoder.info.to_json(),
        "encoder": encoder.info.backend,
        "seeds": seeds,
        "mean": summarize(rows, KEYS),
        "per_rate": per_rate(rows, KEYS),
        "images": rows,
        "timing": timing(wall_s, encode_s, decode_s),
    }


def timing(wall_s: float, encode_s: float, decode_s: float) -> dict:
    """Wall time and its shares: encoding (encoder passes and seed-search decodes), decoding the
    streams, and measuring (metrics and the rest)."""
    measure_s = max(wall_s - encode_s - decode_s, 0.0)
    share = (lambda s: round(s / wall_s, 4) if wall_s > 0 else None)  # noqa: E731
    return {"wall_s": round(wall_s, 3), "encode_s": round(encode_s, 3), "decode_s": round(decode_s, 3),
            "measure_s": round(measure_s, 3), "encode_share": share(encode_s), "decode_share": share(decode_s),
            "measure_share": share(measure_s)}


def ablation(loaded: LoadedModel, images: Iterable[tuple[str, np.ndarray]], rates: list[int],
             seeds: int = 1) -> list[dict]:
    """Per rate: PSNR of the full decode versus each of the family's ablations (for DiffO-style
    models: the dequantized latent straight through the pixel decoder, no denoiser), both in torch
    on the same streams; with a seed search, also the decode with the seed a plain encode stores."""
    import torch

    from edgecodec import bitstream
    from edgecodec.coding import candidate_seeds
    from edgecodec.noise import portable_noise

    codec = loaded.codec.eval()
    spec = codec.stream_spec()
    cases = stream_cases(loaded, images, rates, seeds)
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
    if seeds > 1:
        def first_seed(case):
            idx, _, rate = case.inputs
            noise = portable_noise(candidate_seeds(idx.numpy(), 1)[0], (1, spec.latent_channels) + idx.shape[2:])
            with torch.no_grad():
                return codec.decode_graph(idx, torch.from_numpy(noise), rate).numpy()

        for r in per_rate(compare(cases, first_seed), ("psnr",)):
            row = out[r["rate"]]
            row["psnr_without_seed_search"] = r["psnr"]
            row["seed_search_gain_db"] = row["psnr_with_denoiser"] - r["psnr"]
    return [out[r] for r in rates]


def markdown_table(result: dict) -> str:
    """The per-rate table of an eval result (with its ablation and baselines when present), as the
    model cards print it."""
    extra = {r["rate"]: r for r in result.get("ablation", [])}
    base = {r["rate"]: r for r in result.get("baselines", [])}
    cols = ["rate", "bpp", "PSNR dB", "MS-SSIM"]
    has = lambda key: extra and all(key in e for e in extra.values())  # noqa: E731
    if has("psnr_without_denoiser"):
        cols += ["PSNR without denoiser", "denoiser gain"]
    if has("seed_search_gain_db"):
        cols += ["PSNR with the first seed", f"seed search gain ({result.get('seeds', '?')} seeds)"]
    if base:
        cols += ["JPEG bpp for our PSNR", "WebP bpp for our PSNR"]
    n = len({r["name"] for r in result["images"]})
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in result["per_rate"]:
        r = row["rate"]
        cells = [str(r), f"{row['bpp']:.4f}", f"{row['psnr']:.2f}",
                 "-" if row["ms_ssim"] is None else f"{row['ms_ssim']:.4f}"]
        if has("psnr_without_denoiser"):
            cells += [f"{extra[r]['psnr_without_denoiser']:.2f}", f"{extra[r]['gain_db']:+.2f}"]
        if has("seed_search_gain_db"):
            cells += [f"{extra[r]['psnr_without_seed_search']:.2f}", f"{extra[r]['seed_search_gain_db']:+.2f}"]
        if base:
            cells += [f"{base[r][f'{fmt}_bpp']:.4f} ({base[r][f'{fmt}_at_floor']}/{n} at floor)"
                      for fmt in ("jpeg", "webp")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
