"""Intensity normalization that a model declares and that training and inference share.

MRI intensities have no absolute scale, so a model states how it expects its
input to be normalized. Statistics are fitted once per *volume* (or 2D image),
then applied to any slice of it, so segmenting one slice gives the same result
as segmenting the whole volume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

Scheme = Literal["percentile_zscore", "zscore", "minmax", "none"]
_SCHEMES = ("percentile_zscore", "zscore", "minmax", "none")


@dataclass(frozen=True)
class NormalizationSpec:
    """How to map raw intensities to network input.

    ``percentile_zscore``: clip to the [lower, upper] percentiles of foreground
    voxels, then z-score with the foreground mean and std. Foreground is every
    voxel above ``foreground_fraction`` of the robust intensity range, so it
    covers head *and* brain: no skull stripping is assumed.
    """

    scheme: Scheme = "percentile_zscore"
    lower_percentile: float = 0.5
    upper_percentile: float = 99.5
    foreground_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.scheme not in _SCHEMES:
            raise ValueError(f"Unknown normalization scheme {self.scheme!r}; use one of {_SCHEMES}")
        if not 0 <= self.lower_percentile < self.upper_percentile <= 100:
            raise ValueError("Percentiles must satisfy 0 <= lower < upper <= 100")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalizationSpec:
        return cls(**data)


@dataclass(frozen=True)
class IntensityStats:
    """Statistics fitted on one volume; apply them to any of its slices."""

    clip_low: float
    clip_high: float
    mean: float
    std: float


def fit(image: np.ndarray, spec: NormalizationSpec, max_samples: int = 2_000_000) -> IntensityStats:
    """Fit normalization statistics on a whole volume or 2D image (any channel layout)."""
    values = np.asarray(image, dtype=np.float32).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return IntensityStats(0.0, 1.0, 0.0, 1.0)
    if values.size > max_samples:  # deterministic subsample keeps this O(1) in memory
        values = values[:: int(np.ceil(values.size / max_samples))]
    if spec.scheme == "none":
        return IntensityStats(float(values.min()), float(values.max()), 0.0, 1.0)
    lo_all, hi_all = np.percentile(values, [0.0, 99.9])
    threshold = lo_all + spec.foreground_fraction * (hi_all - lo_all)
    foreground = values[values > threshold]
    if foreground.size < 16:
        foreground = values
    if spec.scheme == "minmax":
        low, high = np.percentile(foreground, [spec.lower_percentile, spec.upper_percentile])
        return IntensityStats(float(low), float(high), float(low), float(max(high - low, 1e-6)))
    if spec.scheme == "percentile_zscore":
        low, high = np.percentile(foreground, [spec.lower_percentile, spec.upper_percentile])
        foreground = np.clip(foreground, low, high)
    else:
        low, high = float(values.min()), float(values.max())
    mean = float(foreground.mean())
    std = float(max(foreground.std(), 1e-6))
    return IntensityStats(float(low), float(high), mean, std)


def apply(image: np.ndarray, stats: IntensityStats, spec: NormalizationSpec) -> np.ndarray:
    """Normalize ``image`` with fitted statistics; returns float32, NaN/Inf set to the minimum."""
    out = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(out)):
        out = np.nan_to_num(out, nan=stats.clip_low, posinf=stats.clip_high, neginf=stats.clip_low)
    if spec.scheme == "none":
        return out.copy() if out is image else out
    out = np.clip(out, stats.clip_low, stats.clip_high)
    return ((out - stats.mean) / stats.std).astype(np.float32, copy=False)


def normalize(image: np.ndarray, spec: NormalizationSpec) -> np.ndarray:
    """Fit on ``image`` and apply in one step."""
    return apply(image, fit(image, spec), spec)


def identity_stats(channels: int) -> list[IntensityStats]:
    """Statistics that leave already-normalized data unchanged (no clipping, no shift)."""
    return [IntensityStats(-1e9, 1e9, 0.0, 1.0) for _ in range(channels)]
