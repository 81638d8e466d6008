"""Per-slice uncertainty from test-time flips, to point clinicians at the slices that matter.

The model runs on the volume and on its left-right mirror image. Voxels where
the two thresholded predictions disagree are uncertain; a slice's score is its
disagreeing area in mm². A perfectly consistent model scores 0 everywhere.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .inference import Predictor
from .progress import Progress


@dataclass
class FlipUncertainty:
    probability: np.ndarray  # mean of the plain and flipped passes
    disagreement: np.ndarray  # bool voxels where the two passes disagree
    per_slice_mm2: np.ndarray  # along ``axis``

    def most_uncertain(self, exclude: set[int] | None = None) -> int | None:
        """The slice with the largest disagreeing area (None if all are certain)."""
        scores = self.per_slice_mm2.copy()
        for index in exclude or ():
            scores[index] = 0
        best = int(np.argmax(scores))
        return best if scores[best] > 0 else None


def iter_flip_uncertainty(
    predictor: Predictor,
    volume: np.ndarray,
    axis: int,
    spacing: tuple[float, float, float],
    threshold: float,
    stats=None,
) -> Generator[Progress, None, FlipUncertainty]:
    """Two passes (plain, then mirrored along the last axis); yields progress over both."""
    stats = stats or predictor.fit_stats(volume, 3)
    total = 2 * volume.shape[-3 + axis]
    plain = yield from _offset(
        predictor.iter_predict_volume(volume, axis, stats, spacing=spacing), 0, total
    )
    mirrored_input = np.ascontiguousarray(np.flip(volume, axis=-1))
    mirrored = yield from _offset(
        predictor.iter_predict_volume(mirrored_input, axis, stats, spacing=spacing),
        total // 2,
        total,
    )
    mirrored = np.flip(mirrored, axis=-1)
    disagreement = (plain >= threshold) != (mirrored >= threshold)
    other = tuple(a for a in range(3) if a != axis)
    pixel = float(np.prod([spacing[a] for a in other]))
    per_slice = np.count_nonzero(disagreement, axis=other) * pixel
    return FlipUncertainty((plain + mirrored) / 2, disagreement, per_slice)


def _offset(generator, start: int, total: int):
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        yield Progress(start + event.done, total, "uncertainty")
