"""DiffO (one-step diffusion with VQ-residual latent codes): the family's configs and model, and the modules a
student of it reuses (its encoder side). `diffo` reproduces DiffO's released decoder; `tiny` is the embedded
default, the same module types at edge width."""

from .codec import CONFIG, CONFIGS, MODEL, Codec, DiffoEncodeSide

__all__ = ["CONFIG", "CONFIGS", "MODEL", "Codec", "DiffoEncodeSide"]
