"""Any image size from fixed-size graphs, in memory bounded by the tile: the latent grid is cut into
overlapping tiles of a graph's size, each tile runs through the graph, and the outputs are blended.

Along each axis the tiles are spread evenly and neighbours share at least OVERLAP latent cells. In
the blend, neighbours cross-fade linearly over OVERLAP cells centred in their shared band, so each
tile's own border (where its convolutions saw zero padding) gets no weight and the weights of all
tiles sum to one at every pixel. A tile's noise is the slice of the whole image's portable noise,
so the result depends on the tile size only through the blend. An axis shorter than the tile is
mirror-padded to it and cropped back.

The encoder tiles the same way, each latent cell taking its indices from the tile whose blend
weight is largest there (the middle of every shared band).

Host-side numpy only: every runtime tiles the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgecodec.frames import to_image

OVERLAP = 4  # latent cells shared by neighbouring tiles (64 px at 16 px a cell); see README "Any size"


@dataclass(frozen=True)
class Axis:
    """Tiles along one axis of n latent cells: their starts; each spans `tile` cells (clipped to n)."""

    n: int
    tile: int
    starts: tuple[int, ...]
    overlap: int

    @classmethod
    def plan(cls, n: int, tile: int, overlap: int = OVERLAP) -> "Axis":
        if n <= tile:
            return cls(n, tile, (0,), 0)
        overlap = min(overlap, tile // 3)  # keeps the cross-fades of a tile's two sides apart
        k = 1 + -(-(n - tile) // (tile - overlap))
        # floor keeps every step <= tile - overlap, so neighbours share >= overlap cells
        return cls(n, tile, tuple(i * (n - tile) // (k - 1) for i in range(k)), overlap)

    def spans(self) -> list[tuple[int, int]]:
        return [(s, min(s + self.tile, self.n)) for s in self.starts]

    def seams(self) -> list[float]:
        """The middle of each band shared by neighbours, in cells."""
        return [(b + s) / 2 for (_, b), s in zip(self.spans()[:-1], self.starts[1:])]

    def weights(self, scale: int) -> list[np.ndarray]:
        """Per tile, the blend weight of each of its pixels (scale pixels a cell)."""
        fade = self.overlap * scale
        out = []
        seams = [c * scale for c in self.seams()]
        for i, (a, b) in enumerate(self.spans()):
            x = np.arange(a * scale, b * scale, dtype=np.float64) + 0.5
            w = np.ones_like(x)
            if i > 0:  # rising over the seam with the previous tile
                w *= np.clip((x - seams[i - 1]) / fade + 0.5, 0.0, 1.0)
            if i < len(seams):  # falling over the seam with the next tile
                w *= 1.0 - np.clip((x - seams[i]) / fade + 0.5, 0.0, 1.0)
            out.append(w.astype(np.float32))
        return out

    def owned(self) -> list[tuple[int, int]]:
        """Per tile, the cells whose encoder indices it supplies: from seam to seam."""
        cuts = [0] + [int(np.floor(c)) for c in self.seams()] + [self.n]
        return list(zip(cuts[:-1], cuts[1:]))


@dataclass(frozen=True)
class Grid:
    rows: Axis
    cols: Axis

    @classmethod
    def plan(cls, h: int, w: int, tile: tuple[int, int], overlap: int = OVERLAP) -> "Grid":
        return cls(Axis.plan(h, tile[0], overlap), Axis.plan(w, tile[1], overlap))

    @property
    def tile(self) -> tuple[int, int]:
        return self.rows.tile, self.cols.tile

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    @property
    def cost(self) -> int:
        """Cells computed in all (what choosing among a bundle's graph sizes minimises)."""
        return self.count * self.rows.tile * self.cols.tile


def pick_grid(h: int, w: int, tiles: list[tuple[int, int]], overlap: int = OVERLAP) -> Grid:
    """The tile size (of those a runtime has) that computes the fewest cells for an h x w grid."""
    return min((Grid.plan(h, w, t, overlap) for t in tiles), key=lambda g: g.cost)


def _fit(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mirror-pad the last two axes up to `size` (an axis shorter than the tile)."""
    ph, pw = size[0] - a.shape[-2], size[1] - a.shape[-1]
    if ph == 0 and pw == 0:
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)], mode="symmetric")


def decode(run: Callable[[np.ndarray, np.ndarray], np.ndarray], indices: np.ndarray, noise: np.ndarray,
           grid: Grid, scale: int, height: int, width: int) -> np.ndarray:
    """Tiled decode -> H x W x 3 uint8. `run(indices, noise)` is one graph call on a tile;
    finished rows of tiles are written out as they complete, so float memory stays one row high."""
    out = np.empty((height, width, 3), np.uint8)
    row_w, col_w = grid.rows.weights(scale), grid.cols.weights(scale)
    col_spans = grid.cols.spans()
    band, band_top = None, 0  # float accumulator of the rows not yet final
    row_spans = grid.rows.spans()
    for i, (r0, r1) in enumerate(row_spans):
        top, bottom = r0 * scale, r1 * scale
        if band is None:
            band, band_top = np.zeros((3, bottom - top, grid.cols.n * scale), np.float32), top
        else:  # rows above this tile row are final: write them, keep the rest, grow to `bottom`
            done = top - band_top
            _emit(out, band[:, :done], band_top, height, width)
            keep = band[:, done:]
            band = np.zeros((3, bottom - top, grid.cols.n * scale), np.float32)
            band[:, : keep.shape[1]] = keep
            band_top = top
        for j, (c0, c1) in enumerate(col_spans):
            tile_out = run(_fit(indices[:, :, r0:r1, c0:c1], grid.tile), _fit(noise[:, :, r0:r1, c0:c1], grid.tile))
            tile_out = tile_out[0, :, : bottom - top, : (c1 - c0) * scale]
            weight = row_w[i][:, None] * col_w[j][None, :]
            band[:, :, c0 * scale: c1 * scale] += tile_out * weight
    _emit(out, band, band_top, height, width)
    return out


def _emit(out: np.ndarray, rows: np.ndarray, top: int, height: int, width: int) -> None:
    if top >= height or rows.shape[1] == 0:
        return
    n = min(rows.shape[1], height - top)
    out[top: top + n] = to_image(rows[None, :, :n], n, width)


def encode(run: Callable[[np.ndarray], np.ndarray], image: np.ndarray, grid: Grid, scale: int) -> np.ndarray:
    """Tiled encode of a (1, 3, Hp, Wp) image -> (1, S, h, w) indices; `run` is one encoder call."""
    out = None
    for (r0, r1), (o0, o1) in zip(grid.rows.spans(), grid.rows.owned()):
        for (c0, c1), (p0, p1) in zip(grid.cols.spans(), grid.cols.owned()):
            pixels = image[:, :, r0 * scale: r1 * scale, c0 * scale: c1 * scale]
            tile = run(_fit(pixels, (grid.tile[0] * scale, grid.tile[1] * scale)))
            if out is None:
                out = np.empty((1, tile.shape[1], grid.rows.n, grid.cols.n), tile.dtype)
            out[:, :, o0:o1, p0:p1] = tile[:, :, o0 - r0: o1 - r0, p0 - c0: p1 - c0]
    return out
