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
    Backend("torch-cuda", "torch_backend", "TorchDecoder", "torch", "cuda", ("fp32",), False, 50),
    Backend("torch", "torch_backend", "TorchDecoder", "torch", "auto", ("fp32",), False, 90),
    Backend("torch-cpu", "torch_backend", "TorchDecoder", "torch", "cpu", ("fp32",), False, 95),
)}


def probe(name: str) -> tuple[bool, str]:
    """(usable here, reason when not)."""
    b = BACKENDS[name]
    if importlib.util.find_spec(b.framework) is None:
        return False, f"Python package '{b.framework}' is not installed"
    if b.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return False, "no CUDA device visible to torch"
    return True, ""


def pick_auto(with_bundle: bool) -> str:
    usable = [b for b in BACKENDS.values() if (with_bundle or not b.needs_bundle) and probe(b.name)[0]]
    if not usable:
        raise RuntimeUnavailable("no decoder backend is usable here (install edgecodec[torch] or a runtime)")
    return min(usable, key=lambda b: b.auto_rank).name


def create_decoder(name: str = "auto", model: str | object = "tiny", bundle: str | None = None,
                   **options) -> Decoder:
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
    return factory(model, device=b.device, **options)


__all__ = ["BACKENDS", "Backend", "Decoder", "RuntimeInfo", "create_decoder", "pick_auto", "probe"]
