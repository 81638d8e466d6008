"""Click encoding for click-guided models, and the clicks a simulated user would make.

A click-guided U-Net takes two extra input channels: Gaussian maps (peak 1) of the
positive and of the negative clicks. A model with three takes, as the third, the
object drawn by the clicks before the latest one (RITM-style previous mask), so a
late click refines the boundary it sees instead of re-deriving the whole object.
The same simulated user serves training
(DeepGrow/DeepEdit-style iterative clicks) and the NoC evaluation: the first click
goes to the centre of a lesion, each later click to the centre of the largest
remaining error, positive on a missed region and negative on a false one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

CLICK_SIGMA = 3.0  # pixels
CLICK_CHANNELS = 2  # positive map, negative map
PREVIOUS_MASK_CHANNELS = 3  # positive map, negative map, previous object
SUPPORTED_CLICK_CHANNELS = (CLICK_CHANNELS, PREVIOUS_MASK_CHANNELS)

_RADIUS = int(np.ceil(3 * CLICK_SIGMA))
_yy, _xx = np.mgrid[-_RADIUS : _RADIUS + 1, -_RADIUS : _RADIUS + 1]
_STAMP = np.exp(-(_yy**2 + _xx**2) / (2 * CLICK_SIGMA**2)).astype(np.float32)


def click_maps(
    shape: tuple[int, int],
    clicks: Iterable[tuple[int, int, bool]],
    channels: int = CLICK_CHANNELS,
    previous: np.ndarray | None = None,
) -> np.ndarray:
    """(channels, H, W) float32 maps of (row, col, positive) clicks; clicks outside are ignored.

    With ``channels=3`` the third map is ``previous``, the object before the latest
    click (all zero when it is ``None``).
    """
    if channels not in SUPPORTED_CLICK_CHANNELS:
        raise ValueError(
            f"click-guided models take {' or '.join(map(str, SUPPORTED_CLICK_CHANNELS))} "
            f"click channels, not {channels}"
        )
    height, width = shape
    maps = np.zeros((channels, height, width), dtype=np.float32)
    if channels == PREVIOUS_MASK_CHANNELS and previous is not None:
        if previous.shape != (height, width):
            raise ValueError(f"previous mask {previous.shape} does not match the maps {shape}")
        maps[2] = previous > 0
    for row, col, positive in clicks:
        if not (0 <= row < height and 0 <= col < width):
            continue
        r0, r1 = max(0, row - _RADIUS), min(height, row + _RADIUS + 1)
        c0, c1 = max(0, col - _RADIUS), min(width, col + _RADIUS + 1)
        stamp = _STAMP[
            r0 - row + _RADIUS : r1 - row + _RADIUS, c0 - col + _RADIUS : c1 - col + _RADIUS
        ]
        target = maps[0 if positive else 1, r0:r1, c0:c1]
        np.maximum(target, stamp, out=target)
    return maps


def clicked_object(mask: np.ndarray, clicks: Iterable[tuple[int, int, bool]]) -> np.ndarray:
    """The parts of ``mask`` (8-connected) that hold a positive click: what the engine keeps."""
    labels, _ = ndimage.label(mask > 0, structure=np.ones((3, 3)))
    height, width = mask.shape
    keep = {
        int(labels[r, c])
        for r, c, positive in clicks
        if positive and 0 <= r < height and 0 <= c < width
    } - {0}
    return np.isin(labels, list(keep)) if keep else np.zeros(mask.shape, dtype=bool)


def centre_of(region: np.ndarray) -> tuple[int, int]:
    """The pixel of ``region`` farthest from its border (where a user would click)."""
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), region.shape)
    return int(row), int(col)


def next_click(
    prediction: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None
) -> tuple[int, int, bool] | None:
    """The simulated user's next click: the centre of the largest error region.

    Positive when that region is missed lesion, negative when it is a false positive.
    ``region`` limits where the user looks (for example, a box around one lesion).
    Returns ``None`` when there is no error left.
    """
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    missed, false = truth & ~prediction, prediction & ~truth
    if region is not None:
        missed, false = missed & region, false & region
    best, best_size, positive = None, 0, True
    for errors, is_positive in ((missed, True), (false, False)):
        if not errors.any():
            continue
        labels, count = ndimage.label(errors)
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        k = int(np.argmax(sizes))
        if sizes[k] > best_size:
            best, best_size, positive = labels == k + 1, int(sizes[k]), is_positive
    if best is None:
        return None
    row, col = centre_of(best)
    return row, col, positive


def first_click(
    truth: np.ndarray, rng: np.random.Generator | None = None
) -> tuple[int, int, bool] | None:
    """A positive click well inside a lesion component.

    Without ``rng``: the centre of the first component (the evaluation's user). With
    ``rng``: a random component and a random pixel at least half as deep inside it as its
    centre, so training does not only ever see perfectly centred clicks.
    """
    labels, count = ndimage.label(truth > 0)
    if count == 0:
        return None
    if rng is None:
        row, col = centre_of(labels == 1)
        return row, col, True
    component = labels == int(rng.integers(1, count + 1))
    distance = ndimage.distance_transform_edt(np.pad(component, 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(distance >= 0.5 * distance.max())  # never empty: the max is in
    k = int(rng.integers(len(rows)))
    return int(rows[k]), int(cols[k]), True
