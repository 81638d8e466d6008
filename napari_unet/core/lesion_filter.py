"""A learned filter of lesion candidates: keep a component if a logistic model says so.

A model's size and extent rule drops every thin candidate, lacunes with the false ones. A
lesion filter instead scores each 26-connected component of the thresholded map on seven
measures of its size, shape and confidence, and keeps it when the score reaches a cut.
Its weights and cut are part of the model's declared post-processing (the sidecar's
``lesion_filter``), fitted by ``scripts/fit_lesion_filter.py`` on brains the network was
not trained on. No measure depends on where the component lies, so nothing ties it to
the anatomy of the training templates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from .editing import _structure

FEATURES = (
    "log10_voxels",
    "axial_extent_mm",
    "inplane_extent_mm",
    "peak_probability",
    "mean_probability",
    "fraction_over_0.9",
    "box_fill",
)


class LesionFilterError(ValueError):
    """A lesion filter whose numbers cannot be used (wrong length, not finite)."""


def component_features(
    labels: np.ndarray,
    probability: np.ndarray,
    spacing: Sequence[float],
    axis: int = 0,
) -> np.ndarray:
    """The ``FEATURES`` of each labelled component (label ``i`` is row ``i - 1``)."""
    spacing = np.asarray(spacing, dtype=float)
    boxes = ndimage.find_objects(labels)
    rows = np.zeros((len(boxes), len(FEATURES)))
    inplane = [d for d in range(3) if d != axis]
    for index, box in enumerate(boxes):
        if box is None:  # a label with no voxels (never from ndimage.label)
            continue
        inside = labels[box] == index + 1
        values = probability[box][inside]
        extent = np.array([s.stop - s.start for s in box]) * spacing
        voxels = int(inside.sum())
        rows[index] = (
            math.log10(voxels),
            extent[axis],
            max(extent[inplane[0]], extent[inplane[1]]),
            float(values.max()),
            float(values.mean()),
            float((values >= 0.9).mean()),
            voxels / inside.size,
        )
    return rows


@dataclass(frozen=True)
class LesionFilter:
    """Standardized logistic regression over ``FEATURES`` with a keep cut."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    cut: float

    def __post_init__(self) -> None:
        for name in ("mean", "scale", "weights"):
            values = getattr(self, name)
            if len(values) != len(FEATURES):
                raise LesionFilterError(
                    f"lesion filter {name} has {len(values)} values; it needs one per "
                    f"measure ({', '.join(FEATURES)})"
                )
        numbers = [*self.mean, *self.scale, *self.weights, self.bias, self.cut]
        if not all(math.isfinite(v) for v in numbers):
            raise LesionFilterError("lesion filter numbers must all be finite")
        if min(self.scale) <= 0:
            raise LesionFilterError("lesion filter scales must be positive")
        if not 0.0 < self.cut < 1.0:
            raise LesionFilterError(f"lesion filter cut must lie between 0 and 1, got {self.cut}")

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The probability that each row is a true lesion."""
        z = (np.asarray(features, float) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias)))

    def apply(
        self,
        mask: np.ndarray,
        probability: np.ndarray,
        spacing: Sequence[float],
        axis: int = 0,
    ) -> np.ndarray:
        """``mask`` with only the components that score at least the cut."""
        labels, count = ndimage.label(np.asarray(mask) > 0, structure=_structure(3))
        if count == 0:
            return mask
        keep = self.scores(component_features(labels, probability, spacing, axis)) >= self.cut
        kept = np.concatenate([[False], keep])[labels]
        return np.where(kept, mask, 0).astype(mask.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "weights": list(self.weights),
            "bias": self.bias,
            "cut": self.cut,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LesionFilter:
        features = data.get("features")
        if features is not None and list(features) != list(FEATURES):
            raise LesionFilterError(
                f"lesion filter measures {features} differ from this version's {list(FEATURES)}"
            )
        try:
            numbers = {
                "mean": tuple(float(v) for v in data["mean"]),
                "scale": tuple(float(v) for v in data["scale"]),
                "weights": tuple(float(v) for v in data["weights"]),
                "bias": float(data["bias"]),
                "cut": float(data["cut"]),
            }
        except (KeyError, TypeError, ValueError) as error:
            raise LesionFilterError(
                f"lesion filter needs mean, scale, weights, bias and cut ({error})"
            ) from error
        return cls(**numbers)


def fit_logistic(
    features: np.ndarray, touches: np.ndarray, l2: float = 1e-2, steps: int = 50
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], float]:
    """Standardize, then fit a logistic regression by Newton steps (light L2 on weights).

    Returns (mean, scale, weights, bias) for a ``LesionFilter``.
    """
    x = np.asarray(features, float)
    y = np.asarray(touches, float)
    if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) != len(y):
        raise LesionFilterError(f"need (n, {len(FEATURES)}) features and n labels")
    if y.min() == y.max():
        raise LesionFilterError("need candidates that touch a lesion and candidates that do not")
    mean = x.mean(0)
    scale = x.std(0)
    scale[scale == 0] = 1.0
    design = np.c_[(x - mean) / scale, np.ones(len(x))]
    w = np.zeros(design.shape[1])
    penalty = l2 * np.eye(len(w))
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-design @ w))
        gradient = design.T @ (p - y) + penalty @ w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + penalty + 1e-9 * np.eye(len(w))
        w -= np.linalg.solve(hessian, gradient)
    return tuple(mean), tuple(scale), tuple(w[:-1]), float(w[-1])
