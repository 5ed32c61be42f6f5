"""`edgecodec export`: decode graphs for each size -> ONNX and/or OpenVINO IR -> parity -> bundle."""

from __future__ import annotations

import datetime
import platform
from dataclasses import dataclass
from typing import Callable

from edgecodec.errors import BundleError, EdgecodecError
from edgecodec.weights import LoadedModel

from .bundle import Bundle, BundleWriter

FORMATS = ("onnx", "openvino")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class Tolerance:
    """Largest |difference| of the [0, 1] float output, and smallest PSNR between the 8-bit
    outputs, that a runtime may show against the torch fp32 decoder on the same stream."""

    max_abs: float
    min_psnr: float


TOLERANCES = {"fp32": Tolerance(2e-3, 50.0), "fp16": Tolerance(5e-2, 35.0), "int8": Tolerance(0.5, 25.0)}


def parse_sizes(text: str, multiple: int) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        try:
            h, w = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise EdgecodecError(f"--size wants HxW[,HxW...], e.g. 512x768; got {item!r}") from None
        if h <= 0 or w <= 0 or h % multiple or w % multiple:
            raise EdgecodecError(f"size {h}x{w} is not a positive multiple of {multiple}, this model's padding unit")
        if h * w > 4096 * 4096:
            raise EdgecodecError(f"size {h}x{w} is too large to export (at most 4096x4096 pixels)")
        sizes.append((h, w))
    return sizes


def tool_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("edgecodec", "torch", "onnx", "onnxruntime-gpu", "onnxruntime", "openvino", "nncf", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def export_bundle(loaded: LoadedModel, out: str, formats: list[str], precision: str,
                  sizes: list[tuple[int, int]], parity_images: int = 2,
                  say: Callable[[str], None] = lambda m: None) -> Bundle:
    from edgecodec.benchmarks.flops import decode_flops

    from .onnx_export import export_onnx, io_description
    from .openvino_export import export_openvino
    from .parity import measure_parity

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise EdgecodecError(f"unknown format {bad[0] if bad else '(none)'}: choose from {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise EdgecodecError(f"unknown precision {precision}: choose from {', '.join(PRECISIONS)}")
    codec = loaded.codec.cpu().eval()
    spec = codec.stream_spec()
    with BundleWriter(out) as writer:
        graphs = []
        for h, w in sizes:
            stem = f"decoder_{h}x{w}"
            onnx_path = writer.path(stem + ".onnx")
            say(f"exporting {h}x{w} to ONNX ({precision})")
            export_onnx(codec, h, w, onnx_path, precision)
            files = {}
            if "openvino" in formats:
                say(f"converting {h}x{w} to OpenVINO IR ({precision})")
                export_openvino(onnx_path, writer.path(stem + ".xml"), precision)
                files.update(openvino=stem + ".xml", openvino_weights=stem + ".bin")
            if "onnx" in formats:
                files["onnx"] = stem + ".onnx"
            else:
                onnx_path.unlink()
            graphs.append({"size": [h, w], "files": files, "gflops": decode_flops(codec.cfg, h, w) / 1e9,
                           **io_description(codec, h, w)})
        manifest = {
            "model": {"name": loaded.name, "source": loaded.source, "trained": loaded.trained,
                      "fingerprint": spec.fingerprint.hex(), "config": codec.cfg.to_json()},
            "precision": precision,
            "stream_spec": spec.to_json(),
            "graphs": graphs,
            "noise_rule": {"generator": "numpy PCG64(seed).standard_normal(float32)", "shape": "1 x C x H/16 x W/16",
                           "rates": spec.to_json()["rates"]},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "tools": tool_versions(),
        }
        staged = writer.write_manifest(manifest)
        say("measuring parity against the torch decoder on real photos")
        tol = TOLERANCES[precision]
        parity = measure_parity(loaded, staged, images=parity_images)
        parity["tolerance"] = {"max_abs": tol.max_abs, "min_psnr": tol.min_psnr}
        failed = [r for r, v in parity["worst"].items() if v["max_abs"] > tol.max_abs or v["min_psnr"] < tol.min_psnr]
        parity["passed"] = not failed
        if failed:
            worst = parity["worst"][failed[0]]
            raise BundleError(f"parity check failed: {failed[0]} differs from torch by up to {worst['max_abs']:.2e} "
                              f"(PSNR {worst['min_psnr']:.1f} dB); tolerance {tol.max_abs:.0e} / {tol.min_psnr} dB "
                              f"for {precision}; no bundle written")
        manifest["parity"] = parity
        return writer.commit(manifest)
