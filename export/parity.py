"""Parity at export: every graph format in a bundle, run by its reference CPU backend
(runtimes.FORMATS), against the torch fp32 decoder on real photos (the sample photos installed
packages ship, resized to each graph size), every rate; and the gate export and quantize share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from edgecodec import bitstream
from edgecodec.bundle import Bundle
from edgecodec.errors import BundleError
from edgecodec.frames import to_model_input
from edgecodec.harness import PSNR_CAP, Case, compare
from edgecodec.imageio import sample_images
from edgecodec.noise import portable_noise
from edgecodec.weights import LoadedModel


@dataclass(frozen=True)
class Tolerance:
    """Largest |difference| of the [0, 1] float output, and smallest PSNR between the 8-bit
    outputs, that a runtime may show against the torch fp32 decoder on the same stream."""

    max_abs: float
    min_psnr: float


TOLERANCES = {"fp32": Tolerance(2e-3, 50.0), "fp16": Tolerance(5e-2, 35.0), "int8": Tolerance(0.5, 25.0)}
# Share of a bundle encoder's indices (every stage) that may differ from the torch encoder's: a
# nearest-code search can only flip where two codes are all but equally near.
ENCODER_MISMATCH = 1e-3


def photos_at(height: int, width: int, count: int) -> list[tuple[str, np.ndarray]]:
    out = []
    for name, rgb in sorted(sample_images().items())[:count]:
        img = Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS)
        out.append((name, np.asarray(img)))
    return out


def bundle_runtimes(bundle: Bundle) -> list:
    from edgecodec.runtimes import create_decoder, reference_backends

    return [create_decoder(name, bundle=bundle) for name in reference_backends(bundle.manifest)]


@torch.no_grad()
def measure_parity(loaded: LoadedModel, bundle: Bundle, images: int = 2) -> dict:
    codec = loaded.codec.cpu().eval()
    spec = codec.stream_spec()
    runtimes = bundle_runtimes(bundle)
    cases, inputs = [], []
    for graph in bundle.manifest["graphs"]:
        h, w = graph["size"]
        for name, rgb in photos_at(h, w, images):
            x = to_model_input(rgb, spec.multiple)
            top = codec.encode_indices(torch.from_numpy(x), spec.num_rates - 1)
            inputs.append((x, top.numpy()))
            for rate in range(spec.num_rates):
                idx = top[:, : rate + 1].numpy()
                cases.append(Case(name, rate, rgb, bitstream.write(spec, idx, h, w, seed=1234 + rate)))
    reference = {}  # the torch graph on the same indices and noise, once per case

    def run_reference(case):
        if id(case) not in reference:
            parsed = bitstream.parse(case.data, spec)
            noise = portable_noise(parsed.header.seed, (1, spec.latent_channels) + parsed.indices.shape[2:])
            reference[id(case)] = codec.decode_graph(torch.from_numpy(parsed.indices), torch.from_numpy(noise),
                                                     parsed.rate).numpy()
        return reference[id(case)]

    rows = []
    for rt in runtimes:
        # the runtime's own host path (parse, entropy decode, noise), one graph run each
        def run(case, rt=rt):
            parsed = rt.parse(case.data)
            return rt.run_graph(parsed.indices, rt.noise_for(parsed), parsed.rate)

        for row in compare(cases, run, reference=run_reference, label={"runtime": rt.name}):
            rows.append({"runtime": rt.name, "size": [row["height"], row["width"]], "image": row["name"],
                         "rate": row["rate"], "max_abs": row["max_abs_vs_reference"],
                         "psnr": row["psnr_vs_reference"], "psnr_reference_vs_original": row["psnr_reference"]})
    worst = {}
    for rt in {r["runtime"] for r in rows}:
        mine = [r for r in rows if r["runtime"] == rt]
        worst[rt] = {"max_abs": max(r["max_abs"] for r in mine), "min_psnr": min(r["psnr"] for r in mine)}
    encoder = {rt.name: _encoder_parity(rt, inputs) for rt in runtimes if rt.can_encode}
    return {"reference": "torch-cpu fp32 (eager)", "images": images, "results": rows, "worst": worst,
            "encoder": {"results": encoder, "tolerance": {"max_mismatch": ENCODER_MISMATCH}}}


def _encoder_parity(runtime, inputs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """The runtime's encode graph against the torch encoder's indices, every stage of every photo."""
    total = mismatched = 0
    for x, want in inputs:
        got = runtime.encode_indices(x)
        total += want.size
        mismatched += int((got != want).sum()) if got.shape == want.shape else want.size
    return {"indices": total, "mismatched": mismatched, "fraction": mismatched / total}


def parity_gate(loaded: LoadedModel, staged: Bundle, precision: str, images: int = 2,
                allow_failure: bool = False, hint: str = "", say: Callable[[str], None] = lambda m: None) -> dict:
    """Measure parity of a staged bundle and judge it against the precision's tolerance: raises
    BundleError (nothing is written) on failure, unless `allow_failure`, which records it."""
    tol = TOLERANCES[precision]
    parity = measure_parity(loaded, staged, images=images)
    parity["tolerance"] = {"max_abs": tol.max_abs, "min_psnr": tol.min_psnr}
    failed = [r for r, v in parity["worst"].items() if v["max_abs"] > tol.max_abs or v["min_psnr"] < tol.min_psnr]
    bad_encoders = [r for r, v in parity["encoder"]["results"].items() if v["fraction"] > ENCODER_MISMATCH]
    parity["passed"] = not failed and not bad_encoders
    if failed:
        worst = parity["worst"][failed[0]]
        msg = (f"parity check failed: {failed[0]} differs from torch by up to {worst['max_abs']:.2e} "
               f"(PSNR {worst['min_psnr']:.1f} dB); tolerance {tol.max_abs:.0e} / {tol.min_psnr} dB for {precision}")
    elif bad_encoders:
        v = parity["encoder"]["results"][bad_encoders[0]]
        msg = (f"encoder parity check failed: {bad_encoders[0]} gives {v['mismatched']} of {v['indices']} indices "
               f"unlike the torch encoder (tolerance {ENCODER_MISMATCH:.1%})")
    if failed or bad_encoders:
        if not allow_failure:
            raise BundleError(msg + "; no bundle written" + (f" ({hint})" if hint else ""))
        say("warning: " + msg + "; writing the bundle as asked, with parity.passed = false")
    return parity
