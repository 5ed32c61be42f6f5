"""Decoder backends behind one interface, in one capability table (read by the CLI and `auto`).

Backends are imported lazily, so a machine without torch (or without a runtime) pays nothing for it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from edgecodec.errors import RuntimeUnavailable

from .base import Decoder, RuntimeInfo


@dataclass(frozen=True)
class Backend:
    name: str
    module: str  # relative to edgecodec.runtimes
    factory: str
    framework: str  # the Python package it needs
    device: str
    precisions: tuple[str, ...]
    needs_bundle: bool
    auto_rank: int  # `auto` takes the usable backend with the lowest rank


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("onnxruntime-tensorrt", "onnxruntime_backend", "OrtDecoder", "onnxruntime", "tensorrt",
            ("fp32", "fp16", "int8"), True, 5),
    Backend("onnxruntime-cuda", "onnxruntime_backend", "OrtDecoder", "onnxruntime", "cuda", ("fp32", "fp16", "int8"),
            True, 10),
    Backend("openvino-gpu", "openvino_backend", "OvDecoder", "openvino", "gpu", ("fp32", "fp16", "int8"), True, 15),
    Backend("openvino-cpu", "openvino_backend", "OvDecoder", "openvino", "cpu", ("fp32", "fp16", "int8"), True, 20),
    Backend("openvino-auto", "openvino_backend", "OvDecoder", "openvino", "auto", ("fp32", "fp16", "int8"), True, 25),
    Backend("onnxruntime-cpu", "onnxruntime_backend", "OrtDecoder", "onnxruntime", "cpu", ("fp32", "fp16", "int8"),
            True, 30),
    Backend("torch-cuda", "torch_backend", "TorchDecoder", "torch", "cuda", ("fp32",), False, 50),
    Backend("torch", "torch_backend", "TorchDecoder", "torch", "auto", ("fp32",), False, 90),
    Backend("torch-cpu", "torch_backend", "TorchDecoder", "torch", "cpu", ("fp32",), False, 95),
)}


def probe(name: str) -> tuple[bool, str]:
    """(usable here, reason when not)."""
    b = BACKENDS[name]
    if importlib.util.find_spec(b.framework) is None:
        return False, f"Python package '{b.framework}' is not installed"
    if b.framework == "torch" and b.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return False, "no CUDA device visible to torch"
    if b.framework == "onnxruntime":
        from .onnxruntime_backend import probe_provider

        return probe_provider(b.device)
    if b.framework == "openvino":
        from .openvino_backend import probe_device

        return probe_device(b.device)
    return True, ""


def pick_auto(with_bundle: bool) -> str:
    """The fastest usable backend: GPU runtimes, then OpenVINO CPU, ONNX Runtime CPU, torch."""
    for b in sorted(BACKENDS.values(), key=lambda b: b.auto_rank):
        if (with_bundle or not b.needs_bundle) and probe(b.name)[0]:
            return b.name
    raise RuntimeUnavailable("no decoder backend is usable here (install edgecodec[torch] or a runtime)")


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

    from edgecodec.export.bundle import open_bundle

    source = open_bundle(bundle, verify=False).manifest["model"]
    return source["source"] if Path(str(source["source"])).is_file() else source["name"]


__all__ = ["BACKENDS", "Backend", "Decoder", "RuntimeInfo", "create_decoder", "pick_auto", "probe"]
