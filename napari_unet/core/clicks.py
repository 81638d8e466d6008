"""Point-and-click segmentation on top of the automatic model (the baseline engine).

A positive click runs the network on a patch around the click if it has not run
there yet, then keeps the lesion component under the click, lowering the
threshold locally when the click falls just outside the model's mask. A
negative click removes the component under it. Each click returns the new
slice mask; the caller applies the difference (undoably) and records the click.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .inference import Predictor

PATCH = 128  # side of the patch the network runs on around a click
LOWEST_THRESHOLD = 0.1


@dataclass(frozen=True)
class Click:
    axis: int
    index: int  # slice index along ``axis``
    row: int
    col: int
    positive: bool

    def to_dict(self) -> dict:
        return asdict(self)


class ClickOutsideImage(ValueError):
    """A click that does not land on the image."""


def check_inside(click: Click, shape: tuple[int, int, int]) -> None:
    other = [s for a, s in enumerate(shape) if a != click.axis]
    if not (
        0 <= click.index < shape[click.axis]
        and 0 <= click.row < other[0]
        and 0 <= click.col < other[1]
    ):
        raise ClickOutsideImage(
            f"the click at slice {click.index}, row {click.row}, column {click.col} is outside "
            f"the image ({shape[click.axis]} slices of {other[0]} x {other[1]}); click on the scan"
        )


def patch_box(row: int, col: int, shape: tuple[int, int], size: int = PATCH):
    """A ``size`` square (clipped to the slice) centred on the click."""
    r0 = int(np.clip(row - size // 2, 0, max(0, shape[0] - size)))
    c0 = int(np.clip(col - size // 2, 0, max(0, shape[1] - size)))
    return slice(r0, min(shape[0], r0 + size)), slice(c0, min(shape[1], c0 + size))


def component_at(mask: np.ndarray, row: int, col: int) -> np.ndarray:
    """The 8-connected component of ``mask`` containing (row, col) (empty if none)."""
    if not mask[row, col]:
        return np.zeros_like(mask, dtype=bool)
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    return labels == labels[row, col]


def grow_from_click(
    probability: np.ndarray,
    row: int,
    col: int,
    threshold: float,
    computed: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """The lesion component under a positive click and the threshold that produced it.

    If the click falls just outside the model's mask, the threshold is lowered locally to
    90 % of the click's probability (not below 0.1), and the component is kept within the
    patch around the click so a low threshold cannot flood the slice. With no support at
    all, a small disc marks the click.
    """
    valid = np.ones_like(probability, dtype=bool) if computed is None else computed.copy()
    p = float(probability[row, col])
    local = threshold
    if p < threshold:
        local = max(LOWEST_THRESHOLD, 0.9 * p)
        rows, cols = patch_box(row, col, probability.shape)
        window = np.zeros_like(valid)
        window[rows, cols] = True
        valid &= window
    if p >= local:
        region = component_at((probability >= local) & valid, row, col)
        if region.any():
            return region, local
    yy, xx = np.ogrid[: probability.shape[0], : probability.shape[1]]
    return (yy - row) ** 2 + (xx - col) ** 2 <= 4, local


class ClickEngine:
    """The automatic model answers clicks; probabilities are cached per slice."""

    def __init__(
        self,
        predictor: Predictor,
        volume: np.ndarray,
        stats=None,
        spacing: tuple[float, float, float] | None = None,
    ) -> None:
        self.predictor = predictor
        self.volume = volume
        self.spacing = spacing  # (Z, Y, X) mm: a 2.5D model's neighbours at its own distance
        self.stats = stats or predictor.fit_stats(volume, 3)
        self.probability = np.zeros(volume.shape[-3:], dtype=np.float32)
        self.computed = np.zeros(volume.shape[-3:], dtype=bool)

    def _slice(self, array: np.ndarray, click: Click) -> np.ndarray:
        return np.take(array, click.index, axis=click.axis)

    def ensure_probability(self, click: Click) -> tuple[slice, slice]:
        """Run the network on the patch around the click unless it already ran there."""
        shape2d = [s for a, s in enumerate(self.volume.shape[-3:]) if a != click.axis]
        rows, cols = patch_box(click.row, click.col, tuple(shape2d))
        computed = self._slice(self.computed, click)
        if computed[rows, cols].all():
            return rows, cols
        image = self.predictor.volume_slab(self.volume, click.index, click.axis, self.spacing)
        image = image[..., rows, cols]
        prob = self.predictor.predict_slice(np.asarray(image, dtype=np.float32), self.stats)
        region = [slice(None)] * 3
        region[click.axis] = click.index
        other = [a for a in range(3) if a != click.axis]
        region[other[0]], region[other[1]] = rows, cols
        self.probability[tuple(region)] = prob
        self.computed[tuple(region)] = True
        return rows, cols

    def apply(self, click: Click, current: np.ndarray, threshold: float) -> np.ndarray:
        """The slice mask after ``click``, given the slice's ``current`` mask."""
        check_inside(click, self.volume.shape[-3:])
        mask = np.asarray(current).copy()
        if not click.positive:
            region = component_at(mask > 0, click.row, click.col)
            mask[region] = 0
            return mask
        self.ensure_probability(click)
        region, _ = grow_from_click(
            self._slice(self.probability, click),
            click.row,
            click.col,
            threshold,
            self._slice(self.computed, click),
        )
        mask[region] = 1
        return mask
