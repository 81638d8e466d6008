"""Overlap-tile plans: which input windows cover an image, and how outputs stitch.

For valid padding (the paper's) the network output of a tile is smaller than
its input, so the image is mirror-padded by the margin and output tiles are laid
edge to edge. Tile starts are multiples of 2**depth, so every tile sees the
same max-pooling grid as a single pass over the whole image: the stitched
result equals the single-pass result.

For same padding the output equals the input in size; tiles overlap and are
blended with weights that fall off towards tile borders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .sizes import output_size, required_multiple, smallest_input_for_output
from .unet import UNetConfig


@dataclass(frozen=True)
class AxisPlan:
    """How one image axis is covered by tiles.

    Tile ``k`` reads padded input ``[starts[k], starts[k] + in_size)`` and its
    output covers image coordinates ``[starts[k] + out_offset, ... + out_size)``.
    """

    length: int
    in_size: int
    out_size: int
    pad_before: int
    pad_after: int
    starts: tuple[int, ...]
    out_offset: int
    ramp: int  # blending ramp width at tile borders (0: no blending)

    def weights(self) -> np.ndarray:
        """1D blending weights over one tile's output."""
        w = np.ones(self.out_size, dtype=np.float32)
        if self.ramp and len(self.starts) > 1:
            edge = (np.arange(self.ramp, dtype=np.float32) + 0.5) / self.ramp
            w[: self.ramp] = edge
            w[-self.ramp :] = edge[::-1]
        return w


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _largest_legal_at_most(limit: int, config: UNetConfig) -> int:
    from .sizes import is_legal

    for size in range(limit, 0, -1):
        if is_legal(size, config):
            return size
    raise ValueError(f"No legal tile size <= {limit} for this network")


def plan_axis(length: int, config: UNetConfig, max_tile: int) -> AxisPlan:
    """Cover ``length`` pixels with as few tiles of input size <= ``max_tile`` as possible."""
    if length < 1:
        raise ValueError(f"Cannot tile an axis of length {length}")
    multiple = required_multiple(config)
    if config.padding == "valid":
        single_in = smallest_input_for_output(length, config)
        if single_in <= max_tile:
            in_size = single_in
            out = output_size(in_size, config)
            margin = (in_size - out) // 2
            return AxisPlan(length, in_size, out, margin, in_size - margin - length, (0,), 0, 0)
        in_size = _largest_legal_at_most(max_tile, config)
        out = output_size(in_size, config)
        margin = (in_size - out) // 2
        stride = (out // multiple) * multiple
        if stride == 0:
            raise ValueError(f"max_tile={max_tile} is too small for a depth-{config.depth} U-Net")
        count = math.ceil(max(length - out, 0) / stride) + 1
        starts = tuple(k * stride for k in range(count))
        pad_after = starts[-1] + in_size - margin - length
        return AxisPlan(length, in_size, out, margin, pad_after, starts, 0, 0)
    # same padding
    max_tile = max(multiple, (max_tile // multiple) * multiple)
    single_in = _round_up(length, multiple)
    if single_in <= max_tile:
        pad_before = (single_in - length) // 2
        return AxisPlan(
            length,
            single_in,
            single_in,
            pad_before,
            single_in - length - pad_before,
            (0,),
            -pad_before,
            0,
        )
    in_size = max_tile
    overlap = max(multiple, _round_up(in_size // 4, multiple))
    stride = in_size - overlap
    pad_before = overlap // 2
    count = math.ceil(max(length + 2 * pad_before - in_size, 0) / stride) + 1
    starts = tuple(k * stride for k in range(count))
    pad_after = starts[-1] + in_size - pad_before - length
    return AxisPlan(
        length, in_size, in_size, pad_before, pad_after, starts, -pad_before, overlap // 2
    )


@dataclass(frozen=True)
class TilePlan:
    """A 2D plan: the product of two axis plans."""

    rows: AxisPlan
    cols: AxisPlan

    @property
    def tile_input_shape(self) -> tuple[int, int]:
        return (self.rows.in_size, self.cols.in_size)

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    def tiles(self) -> list[tuple[int, int]]:
        return [(r, c) for r in self.rows.starts for c in self.cols.starts]

    def pad(self, image: np.ndarray) -> np.ndarray:
        """Mirror-pad the last two axes of ``image`` so every tile reads real context."""
        widths = [(0, 0)] * (image.ndim - 2) + [
            (self.rows.pad_before, self.rows.pad_after),
            (self.cols.pad_before, self.cols.pad_after),
        ]
        mode = "reflect" if min(image.shape[-2:]) > 1 else "edge"
        return np.pad(image, widths, mode=mode)

    def weights(self) -> np.ndarray:
        return np.outer(self.rows.weights(), self.cols.weights())


def plan_tiles(height: int, width: int, config: UNetConfig, max_tile: int = 512) -> TilePlan:
    """Plan the tiles for a ``height x width`` image."""
    return TilePlan(plan_axis(height, config, max_tile), plan_axis(width, config, max_tile))


class Stitcher:
    """Accumulates weighted tile outputs for a batch of images of one size."""

    def __init__(self, count: int, plan: TilePlan) -> None:
        self.plan = plan
        shape = (count, plan.rows.length, plan.cols.length)
        self.total = np.zeros(shape, dtype=np.float32)
        self.weight_sum = np.zeros(shape, dtype=np.float32)
        self._weights = plan.weights()

    def add(self, index: int, row_start: int, col_start: int, output: np.ndarray) -> None:
        rows, cols = self.plan.rows, self.plan.cols
        r0 = row_start + rows.out_offset
        c0 = col_start + cols.out_offset
        r_lo, c_lo = max(r0, 0), max(c0, 0)
        r_hi = min(r0 + rows.out_size, rows.length)
        c_hi = min(c0 + cols.out_size, cols.length)
        if r_hi <= r_lo or c_hi <= c_lo:
            return
        patch = output[r_lo - r0 : r_hi - r0, c_lo - c0 : c_hi - c0]
        w = self._weights[r_lo - r0 : r_hi - r0, c_lo - c0 : c_hi - c0]
        self.total[index, r_lo:r_hi, c_lo:c_hi] += patch * w
        self.weight_sum[index, r_lo:r_hi, c_lo:c_hi] += w

    def result(self) -> np.ndarray:
        return self.total / np.maximum(self.weight_sum, 1e-12)
