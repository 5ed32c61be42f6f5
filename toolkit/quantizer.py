"""VQ-residual code: a base codebook (DiffO's `quantize.embedding`) plus residual VQ stages.

Rate r transmits the base indices and those of the first r residual stages; the dequantized code is
the sum of the looked-up vectors. `prior` holds per-stage index counts: the static entropy model
that travels with the weights (and into the stream fingerprint).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualVQ(nn.Module):
    def __init__(self, codebook_size: int, dim: int, residual_stages: int):
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, dim)
        self.residual = nn.ModuleList(nn.Embedding(codebook_size, dim) for _ in range(residual_stages))
        for i, emb in enumerate(self.residual):  # each stage refines a smaller remainder
            nn.init.normal_(emb.weight, std=0.5 ** (i + 1))
        self.register_buffer("prior", torch.ones(residual_stages + 1, codebook_size, dtype=torch.int64))

    def codebooks(self) -> list[torch.Tensor]:
        return [self.embedding.weight] + [e.weight for e in self.residual]

    @torch.no_grad()
    def quantize(self, e: torch.Tensor, stages: int) -> torch.Tensor:
        """e: (B, D, h, w) continuous code -> (B, stages, h, w) int64 indices, greedy residual search."""
        b, d, h, w = e.shape
        rest = e.permute(0, 2, 3, 1).reshape(-1, d)
        out = []
        for cb in self.codebooks()[:stages]:
            dist = (rest * rest).sum(1, keepdim=True) - 2 * rest @ cb.t() + (cb * cb).sum(1)[None]
            idx = dist.argmin(1)
            out.append(idx)
            rest = rest - cb[idx]
        return torch.stack(out, 1).reshape(b, h, w, stages).permute(0, 3, 1, 2).contiguous()

    def dequantize(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, S, h, w) indices -> (B, D, h, w): sum of the first S stages' code vectors."""
        code = 0
        for s, cb in enumerate(self.codebooks()[: indices.shape[1]]):
            code = code + F.embedding(indices[:, s], cb)
        return code.permute(0, 3, 1, 2)

    def dequantize_kept(self, indices: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, S_all, h, w) indices of every stage and (B, S_all) weights (`rate_mask`) -> (B, D, h, w).

        The exported decode graph takes every stage's indices, zeros where a stream has none, and a
        zero index is a code vector like any other: the stages a rate does not use must be masked
        out, not looked up. Whatever trains on such padded indices must use this too."""
        code = 0
        for s, cb in enumerate(self.codebooks()):
            code = code + keep[:, s, None, None, None] * F.embedding(indices[:, s], cb)
        return code.permute(0, 3, 1, 2)


def rate_mask(rates: torch.Tensor, stages: int) -> torch.Tensor:
    """(B,) rates -> (B, stages) float weights: 1 for the VQ stages rate r uses (0..r), 0 for the rest."""
    return (torch.arange(stages, device=rates.device)[None] <= rates[:, None]).float()
