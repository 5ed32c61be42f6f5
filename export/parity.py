"""Parity at export: every runtime in the bundle against the torch fp32 decoder, on real photos
(the sample photos installed packages ship, resized to each graph size), every rate."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from edgecodec import bitstream
from edgecodec.frames import to_image, to_model_input
from edgecodec.imageio import sample_images
from edgecodec.metrics import psnr
from edgecodec.noise import portable_noise
from edgecodec.weights import LoadedModel

from .bundle import Bundle

PSNR_CAP = 100.0  # identical outputs have infinite PSNR; JSON has no infinity


def photos_at(height: int, width: int, count: int) -> list[tuple[str, np.ndarray]]:
    out = []
    for name, rgb in sorted(sample_images().items())[:count]:
        img = Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS)
        out.append((name, np.asarray(img)))
    return out


def bundle_runtimes(bundle: Bundle) -> list:
    from edgecodec.runtimes.onnxruntime_backend import OrtDecoder
    from edgecodec.runtimes.openvino_backend import OvDecoder

    files = set().union(*(g["files"] for g in bundle.manifest["graphs"]))
    runtimes = []
    if "onnx" in files:
        runtimes.append(OrtDecoder(bundle, "cpu"))
    if "openvino" in files:
        runtimes.append(OvDecoder(bundle, "cpu"))
    return runtimes


@torch.no_grad()
def measure_parity(loaded: LoadedModel, bundle: Bundle, images: int = 2) -> dict:
    codec = loaded.codec.cpu().eval()
    spec = codec.stream_spec()
    runtimes = bundle_runtimes(bundle)
    rows = []
    for graph in bundle.manifest["graphs"]:
        h, w = graph["size"]
        for name, rgb in photos_at(h, w, images):
            x = torch.from_numpy(to_model_input(rgb, spec.multiple))
            top = codec.encode_indices(x, spec.num_rates - 1).numpy()
            for rate in range(spec.num_rates):
                idx = top[:, : rate + 1]
                stream = bitstream.write(spec, idx, h, w, seed=1234 + rate)
                noise = portable_noise(1234 + rate, (1, spec.latent_channels) + idx.shape[2:])
                ref = codec.decode_graph(torch.from_numpy(idx), torch.from_numpy(noise), rate).numpy()
                ref8 = to_image(ref, h, w)
                for rt in runtimes:
                    # the runtime's own host path (parse, entropy decode, noise), one graph run
                    parsed = rt.parse(stream)
                    out = rt.run_graph(parsed.indices, rt.noise_for(parsed), parsed.rate)
                    rows.append({"runtime": rt.name, "size": [h, w], "image": name, "rate": rate,
                                 "max_abs": float(np.abs(out - ref).max()),
                                 "psnr": min(psnr(ref8, to_image(out, h, w)), PSNR_CAP),
                                 "psnr_reference_vs_original": psnr(rgb, ref8)})
    worst = {}
    for rt in {r["runtime"] for r in rows}:
        mine = [r for r in rows if r["runtime"] == rt]
        worst[rt] = {"max_abs": max(r["max_abs"] for r in mine), "min_psnr": min(r["psnr"] for r in mine)}
    return {"reference": "torch-cpu fp32 (eager)", "images": images, "results": rows, "worst": worst}
