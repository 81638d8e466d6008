"""Score a grid of post-processing settings with one labelling per threshold.

A model's post-processing (``editing.model_postprocess``) thresholds the probability map
and then drops whole 26-connected components that are too small or too thin along the
axial axis. Dropping whole components leaves the others unchanged, so every (minimum
size, minimum extent) pair at one threshold can be scored from a table of the
components' sizes, extents and overlaps with the truth, instead of re-labelling the
volume for every setting. The scores equal ``metrics.dice`` and ``metrics.lesion_f1`` of
``model_postprocess``'s output exactly (``tests/test_postprocess_search.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .editing import _structure
from .metrics import _components


@dataclass(frozen=True)
class ComponentTable:
    """The predicted components of one thresholded volume, measured against its truth."""

    sizes: np.ndarray  # voxels per predicted component
    extents_mm: np.ndarray  # span along the axial axis, in mm
    overlaps: np.ndarray  # voxels each predicted component shares with the truth
    pair_pred: np.ndarray  # (predicted, true) component pairs that touch: predicted index
    pair_truth: np.ndarray  # ... and true component label
    truth_voxels: int
    truth_lesions: int
    peaks: np.ndarray | None = None  # highest probability inside each predicted component

    def scores(self, min_voxels: int, min_extent_mm: float) -> tuple[float, float]:
        """Dice and lesion-wise F1 after dropping small and thin components."""
        kept = np.ones(self.sizes.shape, dtype=bool)
        if min_voxels > 0:
            kept &= self.sizes >= min_voxels
        if min_extent_mm > 0:
            kept &= self.extents_mm >= min_extent_mm
        return self.scores_of(kept)

    def scores_of(self, kept: np.ndarray) -> tuple[float, float]:
        """Dice and lesion-wise F1 when only the ``kept`` components (a boolean mask) stay."""
        pred_voxels = int(self.sizes[kept].sum())
        total = pred_voxels + self.truth_voxels
        dice = 1.0 if total == 0 else 2.0 * int(self.overlaps[kept].sum()) / total
        kept_lesions = int(kept.sum())
        if self.truth_lesions == 0 and kept_lesions == 0:
            return dice, 1.0
        if self.truth_lesions == 0 or kept_lesions == 0:
            return dice, 0.0
        found = len(np.unique(self.pair_truth[kept[self.pair_pred]]))
        false_positive = kept_lesions - int((self.overlaps[kept] > 0).sum())
        missed = self.truth_lesions - found
        return dice, 2 * found / (2 * found + false_positive + missed)


def label_truth(truth: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected labels of a true mask, as lesion F1 counts them (once per case)."""
    return _components(np.asarray(truth) > 0)


def component_table(
    prob: np.ndarray,
    threshold: float,
    truth_labels: np.ndarray,
    truth_lesions: int,
    spacing: Sequence[float],
    axis: int = 0,
) -> ComponentTable:
    """Label ``prob >= threshold`` once and measure each component against the truth."""
    if prob.ndim != 3 or prob.shape != truth_labels.shape:
        raise ValueError(
            f"Post-processing search needs a 3D probability map and a truth of the same "
            f"shape; got {prob.shape} and {truth_labels.shape}"
        )
    # the connectivity model_postprocess drops components with
    labels, count = ndimage.label(prob >= threshold, structure=_structure(3))
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count + 1)[1:]
    # the same product as editing.remove_thin_components, so the comparison is identical
    boxes = ndimage.find_objects(labels)
    spans = [(box[axis].stop - box[axis].start) * spacing[axis] for box in boxes]
    extents = np.array(spans) if spans else np.zeros(0)
    peaks = (
        np.asarray(ndimage.maximum(prob, labels, np.arange(1, count + 1)), dtype=np.float32)
        if count
        else np.zeros(0, dtype=np.float32)
    )
    in_truth = truth_labels.ravel() > 0
    overlaps = np.bincount(flat[in_truth], minlength=count + 1)[1:]
    touching = in_truth & (flat > 0)
    pairs = np.unique(
        flat[touching].astype(np.int64) * (truth_lesions + 1) + truth_labels.ravel()[touching]
    )
    return ComponentTable(
        sizes=sizes,
        extents_mm=extents,
        overlaps=overlaps,
        pair_pred=(pairs // (truth_lesions + 1) - 1).astype(np.intp),
        pair_truth=pairs % (truth_lesions + 1),
        truth_voxels=int(in_truth.sum()),
        truth_lesions=int(truth_lesions),
        peaks=peaks,
    )


@dataclass(frozen=True)
class SettingScore:
    threshold: float
    min_voxels: int
    min_extent_mm: float
    dice: float  # mean over cases
    lesion_f1: float


def search_postprocess(
    cases: Iterable[tuple[np.ndarray, np.ndarray, Sequence[float]]],
    thresholds: Sequence[float],
    min_voxels: Sequence[int],
    min_extents_mm: Sequence[float],
    progress: Callable[[str], None] | None = None,
) -> list[SettingScore]:
    """Mean Dice and lesion F1 of every setting over ``(prob, truth, spacing)`` cases.

    Settings come back in ``itertools.product(thresholds, min_voxels, min_extents_mm)``
    order, the order the tuning script always reported.
    """
    cases = list(cases)
    truths = [label_truth(truth) for _, truth, _ in cases]
    per_threshold: dict[float, list[ComponentTable]] = {}
    for threshold in thresholds:
        per_threshold[threshold] = [
            component_table(prob, threshold, labels, count, spacing)
            for (prob, _, spacing), (labels, count) in zip(cases, truths, strict=True)
        ]
        if progress is not None:
            progress(f"labelled {len(cases)} volumes at threshold {threshold}")
    results = []
    for threshold, voxels, extent in itertools.product(thresholds, min_voxels, min_extents_mm):
        scores = [table.scores(voxels, extent) for table in per_threshold[threshold]]
        results.append(
            SettingScore(
                threshold=threshold,
                min_voxels=voxels,
                min_extent_mm=extent,
                dice=float(np.mean([s[0] for s in scores])),
                lesion_f1=float(np.mean([s[1] for s in scores])),
            )
        )
    return results
