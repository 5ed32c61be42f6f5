"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class EdgecodecError(Exception):
    """Base class: a problem with the user's input, not a bug."""

    exit_code = 2


class StreamError(EdgecodecError):
    """A .edc stream that cannot be decoded: truncated, corrupted, foreign or absurd."""

    exit_code = 3


class ModelError(EdgecodecError):
    """A model name or weights file that cannot be used."""


class ImageError(EdgecodecError):
    """An input image that cannot be read or is too large."""


class BundleError(EdgecodecError):
    """An export bundle that is incomplete, tampered with or for another model."""


class RuntimeUnavailable(EdgecodecError):
    """A requested backend or device that is not usable on this machine."""


class MissingPackage(EdgecodecError):
    """An optional package a verb needs is not installed (the edge install has no torch)."""

    exit_code = 4


# optional package (top-level import name) -> the extra of pyproject.toml that installs it
EXTRAS = {"torch": "torch", "safetensors": "torch", "yaml": "torch",
          "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "all", "openvino": "openvino",
          "nncf": "quantize", "sklearn": "quantize", "diffusers": "onedc"}


def missing_package(exc: ImportError, verb: str) -> MissingPackage | None:
    """The one-line error for an optional package that failed to import, or None for anything else
    (a missing module of our own is a bug and keeps its traceback)."""
    name = (exc.name or "").split(".")[0]
    if name not in EXTRAS:
        return None
    hint = ""
    if name in ("torch", "safetensors") and verb in ("encode", "decode", "eval", "bench"):
        hint = "; or use an exported bundle: --bundle DIR (made by `edgecodec export` where torch is)"
    return MissingPackage(f"`{verb}` needs the Python package '{name}', which is not installed: "
                          f'pip install "edgecodec[{EXTRAS[name]}]"{hint}')
