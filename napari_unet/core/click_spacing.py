"""Clicks answered at the pixel spacing the model was trained at.

The click engines (:class:`.clicks.ClickEngine`, :class:`.guided.GuidedClickEngine`) work
in pixels: patch sizes, click discs, windows. A model trained on 1 mm pixels sees a
0.5 mm scan's lesions twice as large (see :mod:`.spacing`). :class:`ResampledClicks`
runs an engine on the volume resampled in the clicked slice's plane to the model's
spacing, places each click at the same spot there, and brings back only what the click
changed, so every voxel the click did not touch keeps its value, hand-painted or not,
and the clicked voxel gets the engine's answer for its own pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .clicks import Click, check_inside
from .inference import Predictor
from .spacing import check_spacing, inplane_spacing, resample_inplane, resampled_shape

EngineFactory = Callable[..., Any]  # (predictor, volume, stats, spacing=...) -> engine


def _scaled(index: int, size: int, new_size: int) -> int:
    """Pixel ``index`` of ``size`` pixels, on a grid of ``new_size`` covering the same extent."""
    return int(np.clip(round((index + 0.5) * new_size / size - 0.5), 0, new_size - 1))


class ResampledClicks:
    """A click engine run on slices resampled to its model's pixel spacing."""

    def __init__(
        self,
        make_engine: EngineFactory,
        predictor: Predictor,
        volume: np.ndarray,
        stats=None,
        spacing: tuple[float, float, float] | None = None,
    ) -> None:
        self.make_engine = make_engine
        self.predictor = predictor
        self.volume = volume
        self.stats = stats or predictor.fit_stats(volume, 3)
        # None: the spacing is unknown, so the engine works on the volume's own voxels
        self.spacing = None if spacing is None else check_spacing(spacing, "voxel spacing")
        self._engines: dict[int, tuple[Any, tuple[int, int] | None]] = {}

    def engine_for(self, axis: int) -> tuple[Any, tuple[int, int] | None]:
        """The engine for slices along ``axis`` and the in-plane shape it works on (None:
        the scan's own pixels, when they are within 5 % of the model's or unknown)."""
        if axis not in self._engines:
            shape = [n for k, n in enumerate(self.volume.shape[-3:]) if k != axis]
            target = None
            if self.spacing is not None:
                inplane = inplane_spacing(self.spacing, axis)
                target = resampled_shape(shape, inplane, self.predictor.target_spacing)
            volume, spacing = self.volume, self.spacing
            if target is not None:  # resample in this axis's plane, then put it back
                moved = np.moveaxis(volume, volume.ndim - 3 + axis, -3)
                volume = np.moveaxis(resample_inplane(moved, target), -3, volume.ndim - 3 + axis)
                scaled = list(spacing)
                planes = [k for k in range(3) if k != axis]
                for k, old, new in zip(planes, shape, target, strict=True):
                    scaled[k] *= old / new
                spacing = tuple(scaled)
            engine = self.make_engine(self.predictor, volume, self.stats, spacing=spacing)
            self._engines[axis] = (engine, target)
        return self._engines[axis]

    def apply(self, click: Click, current: np.ndarray, threshold: float) -> np.ndarray:
        """The slice mask after ``click``, given the slice's ``current`` mask."""
        check_inside(click, self.volume.shape[-3:])
        engine, target = self.engine_for(click.axis)
        if target is None:
            return engine.apply(click, current, threshold)
        height, width = np.shape(current)
        row, col = _scaled(click.row, height, target[0]), _scaled(click.col, width, target[1])
        before = resample_inplane(np.asarray(current, dtype=np.float32), target) >= 0.5
        after = engine.apply(
            Click(click.axis, click.index, row, col, click.positive), before, threshold
        ).astype(bool)
        added = resample_inplane(after & ~before, (height, width)) >= 0.5
        removed = resample_inplane(before & ~after, (height, width)) >= 0.5
        mask = np.asarray(current).astype(bool)
        mask = (mask | added) & ~removed
        mask[click.row, click.col] = after[row, col]  # a click decides its own pixel
        return mask.astype(np.asarray(current).dtype)

    def clear(self, axis: int, index: int) -> None:
        """Forget the clicks on one slice, where the engine keeps any."""
        engine = self._engines.get(axis, (None, None))[0]
        if hasattr(engine, "clear"):
            engine.clear(axis, index)
