"""Decoder backends behind one interface, in one table of graph formats and one of backends, which
`devices`, `auto`, export parity, bench and the pipeline all read.

A new runtime is one module (a Decoder subclass and `probe(device)`) plus one BACKENDS row; a new
graph format is one FORMATS row plus its producer in edgecodec.export. Backends are imported lazily,
so a machine without torch (or without a runtime) pays nothing for them.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from edgecodec.errors import EXTRAS, RuntimeUnavailable

from .base import Decoder, RuntimeInfo


@dataclass(frozen=True)
class GraphFormat:
    """A graph format a bundle can carry: the key of its entry in a graph's "files", how export
    produces it and writes the model's fingerprint into it (functions of edgecodec.export, named so
    that this layer does not import export), and the CPU backend that checks it against torch at
    export and in the pipeline."""

    name: str
    producer: str  # "module:function" in edgecodec.export: (onnx_path, writer, stem, precision) -> files
    reference_backend: str
    stamper: str  # "module:function" in edgecodec.export: (graph path, fingerprint hex) -> None


FORMATS: dict[str, GraphFormat] = {f.name: f for f in (
    GraphFormat("onnx", "edgecodec.export.onnx_export:produce", "onnxruntime-cpu", "edgecodec.export.onnx_export:stamp"),
    GraphFormat("openvino", "edgecodec.export.openvino_export:produce", "openvino-cpu",
                "edgecodec.export.openvino_export:stamp"),
)}


@dataclass(frozen=True)
class Backend:
    """One row per runtime. Its module (relative to edgecodec.runtimes) defines the decoder class
    `factory` and `probe(device) -> (usable, reason)`; the row says which package it needs, which
    graph format of a bundle it reads (None: it runs the model itself), and its rank for `auto`."""

    name: str
    module: str
    factory: str
    framework: str  # the Python package it needs
    device: str
    precisions: tuple[str, ...]
    format: str | None
    auto_rank: int  # `auto` takes the usable backend with the lowest rank
    in_all: str = ""  # why `bench --runtime all` leaves it out unless named ("" = included)

    @property
    def needs_bundle(self) -> bool:
        return self.format is not None


ALL = ("fp32", "fp16", "int8")
BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("onnxruntime-tensorrt", "onnxruntime_backend", "OrtDecoder", "onnxruntime", "tensorrt", ALL, "onnx", 5),
    Backend("onnxruntime-cuda", "onnxruntime_backend", "OrtDecoder", "onnxruntime", "cuda", ALL, "onnx", 10),
    Backend("openvino-gpu", "openvino_backend", "OvDecoder", "openvino", "gpu", ALL, "openvino", 15),
    Backend("openvino-cpu", "openvino_backend", "OvDecoder", "openvino", "cpu", ALL, "openvino", 20),
    Backend("openvino-auto", "openvino_backend", "OvDecoder", "openvino", "auto", ALL, "openvino", 25),
    Backend("onnxruntime-cpu", "onnxruntime_backend", "OrtDecoder", "onnxruntime", "cpu", ALL, "onnx", 30),
    Backend("torch-cuda", "torch_backend", "TorchDecoder", "torch", "cuda", ("fp32",), None, 50),
    Backend("torch", "torch_backend", "TorchDecoder", "torch", "auto", ("fp32",), None, 90),
    Backend("torch-cpu", "torch_backend", "TorchDecoder", "torch", "cpu", ("fp32",), None, 95),
    # never `auto`'s pick: its first decode of each size compiles for a minute or more
    Backend("torch-compiled", "torch_compiled_backend", "CompiledDecoder", "torch", "auto", ("fp32", "fp16", "bf16"),
            None, 100, in_all="compiles for minutes on first use: name it (--runtime torch-compiled) to measure it"),
)}


def probe(name: str) -> tuple[bool, str]:
    """(usable here, reason when not)."""
    b = BACKENDS[name]
    if importlib.util.find_spec(b.framework) is None:
        return False, f"Python package '{b.framework}' is not installed (pip install \"edgecodec[{EXTRAS[b.framework]}]\")"
    return importlib.import_module(f"{__name__}.{b.module}").probe(b.device)


def bundle_problem(runtime: str, manifest: dict, size: tuple[int, int]) -> str | None:
    """Why `runtime` cannot decode this bundle's graph at `size`, or None."""
    b = BACKENDS[runtime]
    if not b.needs_bundle:
        return None
    precision = manifest.get("precision", "fp32")
    if precision not in b.precisions:
        return f"runtime '{runtime}' does not run {precision} graphs"
    exact = [g for g in manifest["graphs"] if tuple(g["size"]) == tuple(size)]
    # a size without its own graph is decoded in tiles of the others (tiling.py)
    if not any(b.format in (g.get("files") or {}) for g in exact or manifest["graphs"]):
        return f"the bundle has no {b.format} graph" + (f" for {size[0]}x{size[1]}" if exact else "")
    return None


def reference_backends(manifest: dict) -> list[str]:
    """The CPU backend of every graph format the bundle carries (what export parity checks)."""
    have = set().union(*(g["files"] for g in manifest["graphs"]))
    return [f.reference_backend for f in FORMATS.values() if f.name in have]


def pick_auto(with_bundle: bool) -> str:
    """The fastest usable backend: GPU runtimes, then OpenVINO CPU, ONNX Runtime CPU, torch."""
    order = sorted(BACKENDS.values(), key=lambda b: b.auto_rank)
    for b in order:
        if (with_bundle or not b.needs_bundle) and probe(b.name)[0]:
            return b.name
    usable = [b.framework for b in order if b.needs_bundle and probe(b.name)[0]]
    if usable:  # runtimes are here, the bundle is not: decoding without one needs torch
        have = ", ".join(dict.fromkeys(usable))
        raise RuntimeUnavailable(f"without torch this needs an exported bundle to run on {have}: pass --bundle DIR "
                                 f'(made by `edgecodec export`), or pip install "edgecodec[torch]"')
    raise RuntimeUnavailable('no decoder runtime is installed: pip install "edgecodec[openvino]" '
                             '(or edgecodec[onnx], or edgecodec[torch])')


def create_decoder(name: str = "auto", model: str | object | None = None, bundle: str | None = None,
                   **options) -> Decoder:
    """A decoder by backend name. `model` (name, path or LoadedModel) feeds the torch backends;
    without one they use the model a given bundle was exported from, else `tiny`."""
    if name == "auto":
        name = pick_auto(bundle is not None)
    if name not in BACKENDS:
        raise RuntimeUnavailable(f"unknown runtime '{name}': choose from auto, {', '.join(BACKENDS)}")
    ok, why = probe(name)
    if not ok:
        raise RuntimeUnavailable(f"runtime '{name}' is not usable here: {why}")
    b = BACKENDS[name]
    factory = getattr(importlib.import_module(f"{__name__}.{b.module}"), b.factory)
    if b.needs_bundle:
        if bundle is None:
            raise RuntimeUnavailable(f"runtime '{name}' decodes an exported bundle: pass --bundle DIR")
        return factory(bundle, device=b.device, **options)
    if model is None:
        model = bundle_model(bundle) if bundle is not None else "tiny"
    return factory(model, device=b.device, **options)


def bundle_model(bundle: str) -> str:
    from pathlib import Path

    from edgecodec.bundle import open_bundle

    source = open_bundle(bundle, verify=False).manifest["model"]
    return source["source"] if Path(str(source["source"])).is_file() else source["name"]


__all__ = ["BACKENDS", "FORMATS", "Backend", "Decoder", "GraphFormat", "RuntimeInfo", "bundle_problem",
           "create_decoder", "pick_auto", "probe", "reference_backends"]
