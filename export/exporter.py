"""`edgecodec export`: decode graphs for each size -> every requested graph format -> parity -> bundle.

The formats and how each is produced come from runtimes.FORMATS; the manifest from bundle.Manifest;
the parity gate from parity.py. `quantize` writes its INT8 bundles with the same three pieces."""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path
from typing import Callable

from edgecodec.bundle import Bundle, BundleWriter, Manifest
from edgecodec.errors import EdgecodecError, RuntimeUnavailable
from edgecodec.weights import LoadedModel

PRECISIONS = ("fp32", "fp16")


def formats() -> tuple[str, ...]:
    from edgecodec.runtimes import FORMATS

    return tuple(FORMATS)


def check_formats(requested: list[str]) -> list[str]:
    """The known formats asked for, in table order; each needs its reference runtime here, which
    the parity gate decodes with (checked now, before any work)."""
    from edgecodec.runtimes import FORMATS, probe

    known = formats()
    bad = [f for f in requested if f not in known]
    if bad or not requested:
        raise EdgecodecError(f"unknown format {bad[0] if bad else '(none)'}: choose from {', '.join(known)}")
    chosen = [f for f in known if f in requested]
    for f in chosen:
        ok, why = probe(FORMATS[f].reference_backend)
        if not ok:
            raise RuntimeUnavailable(f"the {f} graph is checked for parity with {FORMATS[f].reference_backend}, "
                                     f"which is not usable here: {why}")
    return chosen


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


def graph_record(codec, height: int, width: int, files: dict[str, str], encoder: dict | None = None) -> dict:
    """A manifest's graph entry: size, files, FLOPs (total and per stage) and the graph's inputs/outputs;
    `encoder` the encode graph's entry of that size (write_encoder)."""
    from edgecodec.flops import stage_flops

    from .onnx_export import io_description

    flops = stage_flops(codec.cfg, height, width)
    record = {"size": [height, width], "files": files, "gflops": flops.pop("total") / 1e9,
              "stage_gflops": {k: v / 1e9 for k, v in flops.items()}, **io_description(codec, height, width)}
    if encoder is not None:
        record["encoder"] = encoder
    return record


def write_encoder(codec, writer: BundleWriter, height: int, width: int, formats: list[str], tmp: str | Path,
                  say: Callable[[str], None] = lambda m: None) -> dict:
    """The FP32 encode graph of one size in every format (so an install without torch can encode);
    quantized bundles carry it too. Returns its manifest entry."""
    from .onnx_export import encoder_io_description, export_encoder_onnx

    stem = f"encoder_{height}x{width}"
    onnx_path = Path(tmp) / (stem + ".onnx")
    say(f"exporting the encoder at {height}x{width}")
    export_encoder_onnx(codec, height, width, onnx_path)
    files = {}
    for fmt in formats:
        files.update(produce(fmt, onnx_path, writer, stem, "fp32"))
    return {"files": files, "precision": "fp32", **encoder_io_description(codec, height, width)}


def produce(fmt: str, onnx_path: Path, writer: BundleWriter, stem: str, precision: str) -> dict[str, str]:
    """Write format `fmt` of one graph into the bundle from its ONNX export (runtimes.FORMATS row)."""
    from edgecodec.runtimes import FORMATS

    module, func = FORMATS[fmt].producer.split(":")
    return getattr(importlib.import_module(module), func)(onnx_path, writer, stem, precision)


def stamp_graphs(writer: BundleWriter, graphs: list[dict], fingerprint: bytes) -> None:
    """Write the model's fingerprint into every staged graph file, decoders and encoders, so a
    runtime refuses a graph of another model even under a manifest made consistent with it."""
    from edgecodec.runtimes import FORMATS

    for g in graphs:
        for files in (g["files"], g.get("encoder", {}).get("files", {})):
            for fmt, name in files.items():
                if fmt in FORMATS:
                    module, func = FORMATS[fmt].stamper.split(":")
                    getattr(importlib.import_module(module), func)(writer.path(name), fingerprint.hex())


def export_bundle(loaded: LoadedModel, out: str, formats: list[str], precision: str,
                  sizes: list[tuple[int, int]], parity_images: int = 2,
                  say: Callable[[str], None] = lambda m: None) -> Bundle:
    from .onnx_export import export_onnx
    from .parity import parity_gate

    from edgecodec.zoo import require_vq_stream

    require_vq_stream(loaded.codec, "export")
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
            encoder = write_encoder(codec, writer, h, w, formats, tmp, say)
            graphs.append(graph_record(codec, h, w, files, encoder))
        stamp_graphs(writer, graphs, codec.stream_spec().fingerprint)
        manifest = Manifest.for_model(loaded, precision, graphs)
        staged = writer.write_manifest(manifest)
        say("measuring parity against the torch decoder on real photos")
        manifest.parity = parity_gate(loaded, staged, precision, parity_images)
        return writer.commit(manifest)
