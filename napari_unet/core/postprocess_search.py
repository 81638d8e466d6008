"""Score a grid of post-processing settings with one labelling per threshold.

A model's post-processing (``editing.model_postprocess``) thresholds the probability map
and then drops whole 26-connected components that are too small or too thin along the
axial axis. Dropping whole components leaves the others unchanged, so every (minimum
size, minimum extent) pair at one threshold can be scored from a table of the
components' sizes, extents and overlaps with the truth, instead of re-labelling the
volume for every setting. With growth (hysteresis to a lower threshold), every kept
component lies inside one component of the lower threshold, so a setting keeps exactly
the low components that hold a kept one and is scored from the low threshold's table.
The scores equal ``metrics.dice`` and ``metrics.lesion_f1`` of ``model_postprocess``'s
output exactly (``tests/test_postprocess_search.py``).
"""

from __future__ import annotations

import dataclasses
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
    labels: np.ndarray | None = None  # the labelled volume, when a growth search needs it

    def kept(self, min_voxels: int, min_extent_mm: float) -> np.ndarray:
        """Which components survive the size and extent rule (a boolean mask)."""
        kept = np.ones(self.sizes.shape, dtype=bool)
        if min_voxels > 0:
            kept &= self.sizes >= min_voxels
        if min_extent_mm > 0:
            kept &= self.extents_mm >= min_extent_mm
        return kept

    def scores(self, min_voxels: int, min_extent_mm: float) -> tuple[float, float]:
        """Dice and lesion-wise F1 after dropping small and thin components."""
        return self.scores_of(self.kept(min_voxels, min_extent_mm))

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
    keep_labels: bool = False,
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
        labels=labels if keep_labels else None,
    )


def containing_components(high: ComponentTable, low: ComponentTable) -> np.ndarray:
    """For each component of a higher threshold, the index of the low one that holds it."""
    if high.labels is None or low.labels is None:
        raise ValueError("growth search needs tables built with keep_labels=True")
    count = len(high.sizes)
    if count == 0:
        return np.zeros(0, dtype=np.intp)
    # a high component lies inside one low component, so any of its voxels names it
    inside = ndimage.minimum(low.labels, high.labels, np.arange(1, count + 1))
    return np.asarray(inside, dtype=np.intp) - 1


@dataclass(frozen=True)
class SettingScore:
    threshold: float
    min_voxels: int
    min_extent_mm: float
    dice: float  # mean over cases
    lesion_f1: float
    grow_threshold: float | None = None


def search_postprocess(
    cases: Iterable[tuple[np.ndarray, np.ndarray, Sequence[float]]],
    thresholds: Sequence[float],
    min_voxels: Sequence[int],
    min_extents_mm: Sequence[float],
    progress: Callable[[str], None] | None = None,
    grow_thresholds: Sequence[float | None] = (None,),
) -> list[SettingScore]:
    """Mean Dice and lesion F1 of every setting over ``(prob, truth, spacing)`` cases.

    Settings come back in ``itertools.product(grow_thresholds, thresholds, min_voxels,
    min_extents_mm)`` order (with no growth, the order the tuning script always reported);
    a growth threshold at or above a threshold is skipped (it would add nothing).
    """
    cases = list(cases)
    truths = [label_truth(truth) for _, truth, _ in cases]
    growing = [g for g in grow_thresholds if g is not None]
    levels = sorted(set(thresholds) | set(growing))
    pairs = [(t, g) for t in thresholds for g in growing if g < t]
    tables: dict[float, list[ComponentTable]] = {level: [] for level in levels}
    inside: dict[tuple[float, float], list[np.ndarray]] = {pair: [] for pair in pairs}
    for done, ((prob, _, spacing), (labels, count)) in enumerate(
        zip(cases, truths, strict=True), start=1
    ):
        # one case at a time, so only its labelled volumes are held
        case_tables = {
            level: component_table(prob, level, labels, count, spacing, keep_labels=bool(pairs))
            for level in levels
        }
        for t, g in pairs:
            inside[(t, g)].append(containing_components(case_tables[t], case_tables[g]))
        for level, table in case_tables.items():
            tables[level].append(dataclasses.replace(table, labels=None))
        if progress is not None:
            progress(f"labelled volume {done}/{len(cases)} at {len(levels)} thresholds")
    results = []
    for grow, threshold, voxels, extent in itertools.product(
        grow_thresholds, thresholds, min_voxels, min_extents_mm
    ):
        if grow is not None and grow >= threshold:
            continue
        scores = []
        for case, table in enumerate(tables[threshold]):
            kept = table.kept(voxels, extent)
            if grow is None:
                scores.append(table.scores_of(kept))
                continue
            low = tables[grow][case]
            kept_low = np.zeros(low.sizes.shape, dtype=bool)
            kept_low[inside[(threshold, grow)][case][kept]] = True
            scores.append(low.scores_of(kept_low))
        results.append(
            SettingScore(
                threshold=threshold,
                min_voxels=voxels,
                min_extent_mm=extent,
                dice=float(np.mean([s[0] for s in scores])),
                lesion_f1=float(np.mean([s[1] for s in scores])),
                grow_threshold=grow,
            )
        )
    return results
