"""Chronic stroke lesion shapes placed inside brain tissue.

Three kinds, after the ATLAS v2.0 lesion spectrum:

- ``territorial``: a cortical wedge whose apex points to the ventricles, cut to
  tissue, with an irregular border (a branch-occlusion infarct);
- ``lacune``: a small deep ellipsoid, 3-15 mm across, in deep white or grey matter;
- ``subcortical``: a medium irregular blob in white matter.

Each returns a soft occupancy map in [0, 1] (partial volume at the border).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .templates import Template

KINDS = ("territorial", "lacune", "subcortical")


@dataclass
class LesionSpec:
    kind: str
    centre: tuple[int, int, int]
    volume_ml: float


def _smooth_noise(shape, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Zero-mean, unit-std noise smoothed at ``scale`` voxels."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), scale)
    return field / max(float(field.std()), 1e-6)


def _box(centre, radius, shape):
    lo = [max(0, int(c - radius)) for c in centre]
    hi = [min(s, int(c + radius) + 1) for c, s in zip(centre, shape, strict=True)]
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _pick(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int, int]:
    points = np.argwhere(mask)
    if len(points) == 0:
        raise ValueError("no voxel satisfies the placement rule")
    return tuple(int(v) for v in points[rng.integers(len(points))])


class LesionSampler:
    """Draws lesions in one template; precomputes the placement maps once."""

    def __init__(self, template: Template) -> None:
        self.template = template
        tissue = template.tissue
        self.tissue_mask = (tissue > 0.5) & template.brain
        depth = ndimage.distance_transform_edt(template.brain)
        self.depth = depth.astype(np.float32)
        self.cortex = (template.grey > 0.5) & (depth > 2) & (depth < 8)
        self.deep = self.tissue_mask & (depth > 25)
        self.white = (template.white > 0.8) & (depth > 12)
        coords = np.argwhere(template.brain)
        self.centroid = coords.mean(axis=0)

    def sample(self, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, LesionSpec]:
        """A soft occupancy map (full template shape) and what was drawn."""
        shape = self.template.t1.shape
        occupancy = np.zeros(shape, dtype=np.float32)
        if kind == "territorial":
            hard, centre = self._wedge(rng)
        elif kind == "lacune":
            centre = _pick(self.deep, rng)
            radii = rng.uniform(2.0, 7.5) * rng.uniform(0.75, 1.25, size=3)
            hard = self._ellipsoid(centre, radii, rng, roughness=0.1)
        elif kind == "subcortical":
            centre = _pick(self.white, rng)
            radii = rng.uniform(6.0, 16.0) * rng.uniform(0.6, 1.4, size=3)
            hard = self._ellipsoid(centre, radii, rng, roughness=0.45)
        else:
            raise ValueError(f"Unknown lesion kind {kind!r}; use one of {KINDS}")
        region, mask = hard
        soft = ndimage.gaussian_filter(mask.astype(np.float32), rng.uniform(0.6, 1.3))
        occupancy[region] = soft
        occupancy *= np.clip(self.template.tissue * 1.5, 0, 1) * self.template.brain
        volume_ml = float((occupancy > 0.5).sum()) / 1000.0
        return occupancy, LesionSpec(kind, centre, volume_ml)

    def _ellipsoid(self, centre, radii, rng, roughness: float):
        radius = float(max(radii)) * 1.6 + 3
        region = _box(centre, radius, self.template.t1.shape)
        grids = np.meshgrid(*[np.arange(s.start, s.stop) for s in region], indexing="ij")
        rotation = _random_rotation(rng)
        offsets = np.stack([g - c for g, c in zip(grids, centre, strict=True)], axis=-1)
        local = offsets @ rotation.T
        distance = np.sqrt(((local / radii) ** 2).sum(axis=-1))
        noise = _smooth_noise(distance.shape, rng, max(1.5, float(min(radii)) / 2))
        mask = distance < 1.0 + roughness * noise
        mask &= self.tissue_mask[region]
        return region, ndimage.binary_opening(mask) if mask.sum() > 50 else mask

    def _wedge(self, rng):
        surface = _pick(self.cortex, rng)
        direction = np.asarray(surface, dtype=np.float32) - self.centroid
        direction /= np.linalg.norm(direction) + 1e-6
        length = rng.uniform(25.0, 60.0)
        apex = np.asarray(surface) - direction * length
        half_angle = np.deg2rad(rng.uniform(18.0, 40.0))
        radius = length * 1.25
        centre = tuple(int(v) for v in (np.asarray(surface) + apex) / 2)
        region = _box(centre, radius, self.template.t1.shape)
        grids = np.meshgrid(*[np.arange(s.start, s.stop) for s in region], indexing="ij")
        offsets = np.stack([g - a for g, a in zip(grids, apex, strict=True)], axis=-1)
        along = offsets @ direction
        norm = np.linalg.norm(offsets, axis=-1) + 1e-6
        angle = np.arccos(np.clip(along / norm, -1, 1))
        noise = _smooth_noise(angle.shape, rng, 3.0)
        mask = (angle < half_angle * (1 + 0.25 * noise)) & (along > 0) & (along < length * 1.2)
        mask &= self.tissue_mask[region]
        mask = ndimage.binary_opening(mask, iterations=1)
        labels, count = ndimage.label(mask)
        if count > 1:  # keep the main piece: an infarct is one territory
            sizes = ndimage.sum(mask, labels, range(1, count + 1))
            mask = labels == (int(np.argmax(sizes)) + 1)
        return (region, mask), centre


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
