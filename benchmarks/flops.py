"""FLOPs of the decode graph (2 x MAC), counted by torch's FlopCounterMode on the meta device:
no weights, no compute, so even DiffO's 1.7 TFLOP graph counts in well under a second."""

from __future__ import annotations


def decode_flops(cfg, height: int, width: int) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from edgecodec.codec import Codec

    with torch.device("meta"):
        codec = Codec(cfg)
    h, w = height // cfg.downsample, width // cfg.downsample
    idx = torch.zeros(1, cfg.num_rates, h, w, dtype=torch.long, device="meta")
    noise = torch.zeros(1, cfg.latent_channels, h, w, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        codec.decode_graph(idx, noise, 0)
    return int(counter.get_total_flops())
