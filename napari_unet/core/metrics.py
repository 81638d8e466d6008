"""Lesion segmentation metrics as in the ISLES 2022 challenge, plus HD95.

All functions take binary masks on the same voxel grid and the voxel spacing
in mm. Connectivity for lesion counting is 26-connected in 3D (8 in 2D).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .statistics import bootstrap_mean_ci


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient; 1.0 when both masks are empty."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int((pred & truth).sum()) / total


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    return ndimage.label(mask.astype(bool), structure=structure)


def lesion_count(mask: np.ndarray) -> int:
    return _components(mask)[1]


def lesion_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    """Lesion-wise F1: a true lesion is found if any predicted voxel overlaps it (ISLES 2022)."""
    truth_labels, n_truth = _components(truth)
    pred_labels, n_pred = _components(pred)
    if n_truth == 0 and n_pred == 0:
        return 1.0
    if n_truth == 0 or n_pred == 0:
        return 0.0
    overlap = pred.astype(bool) & truth.astype(bool)
    tp = len(np.unique(truth_labels[overlap]))
    fp = n_pred - len(np.unique(pred_labels[overlap]))
    fn = n_truth - tp
    return 2 * tp / (2 * tp + fp + fn)


def volume_ml(mask: np.ndarray, spacing: tuple[float, ...]) -> float:
    return float(mask.astype(bool).sum()) * float(np.prod(spacing)) / 1000.0


def hausdorff95(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th-percentile symmetric surface distance in mm (0 if both empty, inf if one is)."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    if not pred.any() and not truth.any():
        return 0.0
    if not pred.any() or not truth.any():
        return float("inf")
    box = _union_box(pred | truth, margin=2)
    pred, truth = pred[box], truth[box]
    surface_p = pred & ~ndimage.binary_erosion(pred)
    surface_t = truth & ~ndimage.binary_erosion(truth)
    dist_to_t = ndimage.distance_transform_edt(~surface_t, sampling=spacing)
    dist_to_p = ndimage.distance_transform_edt(~surface_p, sampling=spacing)
    distances = np.concatenate([dist_to_t[surface_p], dist_to_p[surface_t]])
    return float(np.percentile(distances, 95))


def _union_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    coords = np.argwhere(mask)
    lo = np.maximum(coords.min(axis=0) - margin, 0)
    hi = np.minimum(coords.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


@dataclass
class CaseMetrics:
    case: str
    dice: float
    lesion_f1: float
    abs_volume_diff_ml: float
    abs_lesion_count_diff: int
    hd95_mm: float
    truth_ml: float
    pred_ml: float

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_case(
    case: str, pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]
) -> CaseMetrics:
    """All ISLES 2022 metrics and HD95 for one case."""
    if pred.shape != truth.shape:
        raise ValueError(f"{case}: prediction shape {pred.shape} != truth shape {truth.shape}")
    truth_ml, pred_ml = volume_ml(truth, spacing), volume_ml(pred, spacing)
    return CaseMetrics(
        case=case,
        dice=dice(pred, truth),
        lesion_f1=lesion_f1(pred, truth),
        abs_volume_diff_ml=abs(pred_ml - truth_ml),
        abs_lesion_count_diff=abs(lesion_count(pred) - lesion_count(truth)),
        hd95_mm=hausdorff95(pred, truth, spacing),
        truth_ml=truth_ml,
        pred_ml=pred_ml,
    )


def summarize(results: list[CaseMetrics]) -> dict:
    """Means over cases (HD95 over cases where it is finite), with bootstrap 95 % intervals."""
    if not results:
        return {}
    keys = ["dice", "lesion_f1", "abs_volume_diff_ml", "abs_lesion_count_diff"]
    summary = {f"mean_{k}": float(np.mean([getattr(r, k) for r in results])) for k in keys}
    finite = [r.hd95_mm for r in results if np.isfinite(r.hd95_mm)]
    summary["mean_hd95_mm"] = float(np.mean(finite)) if finite else float("nan")
    summary["cases"] = len(results)
    for key in ("dice", "lesion_f1"):  # how far the mean over these few cases can be trusted
        summary[f"{key}_ci95"] = list(bootstrap_mean_ci([getattr(r, key) for r in results]))
    return summary
