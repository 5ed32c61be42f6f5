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
