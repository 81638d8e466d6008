"""One image's segmentation state: cached probabilities, the mask, and hand edits.

The network's probabilities are cached per voxel, so the threshold can be
changed instantly without re-running it. Voxels the user painted or erased by
hand are remembered and are never overwritten by a threshold change or a new
prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .editing import model_postprocess
from .lesion_filter import LesionFilter

Region = tuple[slice, slice, slice]


@dataclass
class SegmentationSession:
    shape: tuple[int, int, int]
    threshold: float = 0.5
    min_lesion_voxels: int = 0  # the model's post-processing, applied to whole-volume results
    min_lesion_extent_mm: float = 0.0  # likewise: drop components thinner than this (axial)
    grow_threshold: float | None = None  # likewise: kept components grow to p >= this
    lesion_filter: LesionFilter | None = None  # likewise: the model's learned candidate filter
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    probability: np.ndarray = field(init=False)
    computed: np.ndarray = field(init=False)  # bool: the network ran on this voxel
    manual: np.ndarray = field(init=False)  # bool: the user set this voxel by hand
    auto_mask: np.ndarray = field(init=False)  # last mask we derived (to detect edits)

    def __post_init__(self) -> None:
        self.probability = np.zeros(self.shape, dtype=np.float32)
        self.computed = np.zeros(self.shape, dtype=bool)
        self.manual = np.zeros(self.shape, dtype=bool)
        self.auto_mask = np.zeros(self.shape, dtype=np.uint8)

    def note_edits(self, labels: np.ndarray, region: Region | None = None) -> int:
        """Mark voxels whose label differs from what we derived as hand-edited."""
        region = region or (slice(None),) * 3
        changed = labels[region] != self.auto_mask[region]
        count = int(changed.sum())
        if count:
            self.manual[region] |= changed
            np.copyto(self.auto_mask[region], labels[region], where=changed, casting="unsafe")
        return count

    def add_probabilities(
        self,
        probability: np.ndarray,
        region: Region,
        labels: np.ndarray,
        derived: np.ndarray | None = None,
    ) -> None:
        """Store new probabilities for ``region`` and re-derive ``labels`` there in place.

        Hand-edited voxels in ``labels`` are kept; everything outside ``region`` is untouched.
        ``derived`` is :meth:`derive` of ``probability`` when a worker already computed it.
        """
        self.note_edits(labels)
        self.probability[region] = probability
        self.computed[region] = True
        self._derive(labels, region, derived)

    def set_threshold(self, threshold: float, labels: np.ndarray) -> Region | None:
        """Re-derive the mask from cached probabilities; returns the region that changed."""
        self.note_edits(labels)
        self.threshold = float(threshold)
        if not self.computed.any():
            return None
        region = _bounding_box(self.computed)
        self._derive(labels, region)
        return region

    def derive(self, probability: np.ndarray) -> np.ndarray:
        """The mask these probabilities give (pure: safe to call from a worker thread)."""
        derived = (probability >= self.threshold).astype(np.uint8)
        if derived.ndim == 3 and derived.shape == self.shape:  # whole volumes only
            derived = model_postprocess(
                derived,
                self.min_lesion_voxels,
                self.min_lesion_extent_mm,
                self.spacing,
                probability=probability,
                grow_threshold=self.grow_threshold,
                lesion_filter=self.lesion_filter,
            )
        return derived

    def _derive(
        self, labels: np.ndarray, region: Region, derived: np.ndarray | None = None
    ) -> None:
        if derived is None:
            derived = self.derive(self.probability[region])
        # in place, without whole-volume temporaries: this runs on the GUI thread
        take = self.computed[region] & ~self.manual[region]
        np.copyto(labels[region], derived, where=take, casting="unsafe")
        np.copyto(self.auto_mask[region], derived, where=take, casting="unsafe")


def _bounding_box(mask: np.ndarray) -> Region:
    axes = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        axes.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(axes)
