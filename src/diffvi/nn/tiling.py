"""A network applied to an image tile by tile, the tiles overlapping and blended: bounded
memory for images of any size.

:class:`Tiling` covers an ``H × W`` image with ``t × t`` tiles, ``t = min(tile, H)`` rows by
``min(tile, W)`` columns, whose corners step by ``tile − overlap`` along each axis, the last one
flush with the border (so neighbours overlap by at least ``overlap`` pixels and every tile is
whole). :meth:`Tiling.apply` evaluates a function of the crops a batch of tiles at a time and
blends the results:

    out(p) = Σ_k w_k(p) f(crop_k)(p) / Σ_k w_k(p).

The weight of a tile is a product of one profile per axis. Along the image's own borders it is
1; from an edge that the tile shares with a neighbour it is 0 for the first ``margin`` pixels
(``overlap // 4`` by default), then rises as a raised cosine, sin²(π/2 · r), to 1 at
``overlap − margin`` pixels from that edge. Since neighbours overlap by ``overlap`` or more,
every pixel has weight in some tile.

Exactness: if ``f`` is local — its output at a pixel depends on its inputs within ``r`` pixels
only, e.g. ``r`` stacked 3×3 convolutions without normalisation — and ``r <= margin``, every
tile with weight at a pixel sees all the inputs that pixel depends on (zero padding included:
a tile edge on the image border is the image's border), so the blend equals ``f`` of the whole
image up to rounding. Networks with statistics over the whole input (GroupNorm, attention) give
per-tile approximations, better for larger tiles, and the ramp hides the seams.

Memory: the output and the weight map are ``O(H · W)``; ``f`` sees at most ``batch_size`` tiles
at once, ``O(batch_size · tile²)`` activations whatever the image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["Tiling", "tile_starts"]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """First index of each tile along an axis of ``size`` pixels: ``0, s, 2s, …`` with stride
    ``s = tile − overlap``, the last at ``size − tile`` (``[0]`` when ``size <= tile``)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return [*starts, size - tile]


def _ramp(distance: Tensor, overlap: int, margin: int) -> Tensor:
    """0 for ``distance < margin``, sin²(π/2 · r) with r rising linearly to 1 at
    ``overlap − margin``, 1 beyond."""
    r = ((distance - margin + 1) / (overlap - 2 * margin + 1)).clamp(0, 1)
    return torch.sin(0.5 * math.pi * r).pow(2)


def _profile(start: int, length: int, size: int, overlap: int, margin: int) -> Tensor:
    """Weights ``[length]`` of the tile at ``start`` along an axis of ``size`` pixels."""
    d = torch.arange(length, dtype=torch.float64)
    weight = torch.ones(length, dtype=torch.float64)
    if start > 0:
        weight = weight * _ramp(d, overlap, margin)
    if start + length < size:
        weight = weight * _ramp(length - 1 - d, overlap, margin)
    return weight


class Tiling:
    """The tiles of an ``height × width`` image (see the module docstring).

    Args:
        height, width: image size ``H × W``.
        tile: tile side (tiles are ``min(tile, H) × min(tile, W)``).
        overlap: least overlap of neighbouring tiles, ``0 <= overlap <= tile // 2``.
        margin: pixels at a shared edge with weight 0, ``<= overlap // 2`` (default
            ``overlap // 4``): the receptive radius up to which the blend is exact.

    Attributes:
        tops, lefts: first row and column of each tile row and column.
        tile_height, tile_width: the tiles' size.
    """

    def __init__(
        self, height: int, width: int, tile: int, overlap: int = 0, margin: int | None = None
    ) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"image size must be >= 1, got {height}x{width}")
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        if not 0 <= overlap <= tile // 2:
            raise ValueError(f"overlap must be in [0, tile // 2 = {tile // 2}], got {overlap}")
        margin = overlap // 4 if margin is None else margin
        if not 0 <= margin <= overlap // 2:
            raise ValueError(f"margin must be in [0, overlap // 2 = {overlap // 2}], got {margin}")
        self.height, self.width, self.tile, self.overlap = height, width, tile, overlap
        self.margin = margin
        self.tile_height, self.tile_width = min(tile, height), min(tile, width)
        self.tops = tile_starts(height, tile, overlap)
        self.lefts = tile_starts(width, tile, overlap)
        self._rows = [_profile(t, self.tile_height, height, overlap, margin) for t in self.tops]
        self._cols = [_profile(s, self.tile_width, width, overlap, margin) for s in self.lefts]
        total_rows = torch.zeros(height, dtype=torch.float64)
        for top, row in zip(self.tops, self._rows, strict=True):
            total_rows[top : top + self.tile_height] += row
        total_cols = torch.zeros(width, dtype=torch.float64)
        for left, col in zip(self.lefts, self._cols, strict=True):
            total_cols[left : left + self.tile_width] += col
        # Σ_k w_k = (Σ row profiles) ⊗ (Σ column profiles): tiles form a grid.
        assert total_rows.min() > 0 and total_cols.min() > 0, "a pixel without weight"
        self._total = total_rows[:, None] * total_cols[None, :]

    def __len__(self) -> int:
        return len(self.tops) * len(self.lefts)

    def boxes(self) -> list[tuple[int, int]]:
        """``(top, left)`` of every tile, row by row."""
        return [(top, left) for top in self.tops for left in self.lefts]

    def weight(self, index: int) -> Tensor:
        """Blending weights ``[tile_height, tile_width]`` (float64) of tile ``index``."""
        row, col = divmod(index, len(self.lefts))
        return self._rows[row][:, None] * self._cols[col][None, :]

    def apply(self, fn: Callable[..., Tensor], *inputs: Tensor, batch_size: int = 16) -> Tensor:
        """Blend ``fn`` over the tiles: ``inputs`` each ``[N, C_i, H, W]`` → ``[N, C_out, H,
        W]``.

        ``fn(items, *crops)`` gets ``items`` (int64 ``[b]``, which of the ``N`` images each
        crop comes from) and the crops ``[b, C_i, tile_height, tile_width]`` of every input,
        ``b <= batch_size``, and returns ``[b, C_out, tile_height, tile_width]``.
        """
        if not inputs:
            raise ValueError("apply needs at least one input")
        count = inputs[0].shape[0]
        for v in inputs:
            if v.ndim != 4 or v.shape[0] != count or v.shape[-2:] != (self.height, self.width):
                raise ValueError(
                    f"inputs must be [{count}, C, {self.height}, {self.width}], got {list(v.shape)}"
                )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        boxes = self.boxes()
        jobs = [(item, k) for item in range(count) for k in range(len(boxes))]
        th, tw = self.tile_height, self.tile_width
        out: Tensor | None = None
        for first in range(0, len(jobs), batch_size):
            part = jobs[first : first + batch_size]
            items = torch.tensor([item for item, _ in part], device=inputs[0].device)
            crops = [
                torch.stack(
                    [
                        v[i, :, boxes[k][0] : boxes[k][0] + th, boxes[k][1] : boxes[k][1] + tw]
                        for i, k in part
                    ]  # fmt: skip
                )
                for v in inputs
            ]
            result = fn(items, *crops)
            if out is None:
                out = result.new_zeros(count, result.shape[1], self.height, self.width)
            for j, (i, k) in enumerate(part):
                top, left = boxes[k]
                weight = self.weight(k).to(result.dtype).to(result.device)
                out[i, :, top : top + th, left : left + tw] += weight * result[j]
        assert out is not None
        return out / self._total.to(out.dtype).to(out.device)
