"""edgecodec: one-step diffusion image codecs, from a PyTorch checkpoint to fast, verified edge decoders."""

__version__ = "0.5.0.dev0"
