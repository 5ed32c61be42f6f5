"""`edgecodec export`: decode graphs for each size -> every requested graph format -> parity -> bundle.

The formats and how each is produced come from runtimes.FORMATS; the manifest from bundle.Manifest;
the parity gate from parity.py. `quantize` writes its INT8 bundles with the same three pieces."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Callable

from edgecodec.bundle import Bundle, BundleWriter, Manifest
from edgecodec.errors import EdgecodecError
from edgecodec.weights import LoadedModel

PRECISIONS = ("fp32", "fp16")


def formats() -> tuple[str, ...]:
    from edgecodec.runtimes import FORMATS

    return tuple(FORMATS)


def check_formats(requested: list[str]) -> list[str]:
    known = formats()
    bad = [f for f in requested if f not in known]
    if bad or not requested:
        raise EdgecodecError(f"unknown format {bad[0] if bad else '(none)'}: choose from {', '.join(known)}")
    return [f for f in known if f in requested]


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


def graph_record(codec, height: int, width: int, files: dict[str, str]) -> dict:
    """A manifest's graph entry: size, files, FLOPs (total and per stage) and the graph's inputs/outputs."""
    from edgecodec.flops import stage_flops

    from .onnx_export import io_description

    flops = stage_flops(codec.cfg, height, width)
    return {"size": [height, width], "files": files, "gflops": flops.pop("total") / 1e9,
            "stage_gflops": {k: v / 1e9 for k, v in flops.items()}, **io_description(codec, height, width)}


def produce(fmt: str, onnx_path: Path, writer: BundleWriter, stem: str, precision: str) -> dict[str, str]:
    """Write format `fmt` of one graph into the bundle from its ONNX export (runtimes.FORMATS row)."""
    from edgecodec.runtimes import FORMATS

    module, func = FORMATS[fmt].producer.split(":")
    return getattr(importlib.import_module(module), func)(onnx_path, writer, stem, precision)


def export_bundle(loaded: LoadedModel, out: str, formats: list[str], precision: str,
                  sizes: list[tuple[int, int]], parity_images: int = 2,
                  say: Callable[[str], None] = lambda m: None) -> Bundle:
    from .onnx_export import export_onnx
    from .parity import parity_gate

    formats = check_formats(formats)
    if precision not in PRECISIONS:
        raise EdgecodecError(f"unknown precision {precision}: choose from {', '.join(PRECISIONS)}")
    codec = loaded.codec.cpu().eval()
    with BundleWriter(out) as writer, tempfile.TemporaryDirectory(prefix="edgecodec-export-") as tmp:
        graphs = []
        for h, w in sizes:
            stem = f"decoder_{h}x{w}"
            onnx_path = Path(tmp) / (stem + ".onnx")
            say(f"exporting {h}x{w} to ONNX ({precision})")
            export_onnx(codec, h, w, onnx_path, precision)
            files = {}
            for fmt in formats:
                say(f"writing the {fmt} graph of {h}x{w} ({precision})")
                files.update(produce(fmt, onnx_path, writer, stem, precision))
            graphs.append(graph_record(codec, h, w, files))
        manifest = Manifest.for_model(loaded, precision, graphs)
        staged = writer.write_manifest(manifest)
        say("measuring parity against the torch decoder on real photos")
        manifest.parity = parity_gate(loaded, staged, precision, parity_images)
        return writer.commit(manifest)
