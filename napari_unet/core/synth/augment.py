"""Whole-brain appearance and shape changes, so a model does not learn one template.

Everything works on 3D arrays in voxel space and takes an explicit generator
for reproducibility.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def random_deformation(
    shape,
    rng: np.random.Generator,
    rotate_deg=10.0,
    scale=0.1,
    shift_mm=8.0,
    elastic_mm=4.0,
    control=6,
) -> np.ndarray:
    """Sampling coordinates (3, *shape) of a random affine + smooth elastic warp."""
    centre = (np.asarray(shape, dtype=np.float32) - 1) / 2
    angles = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg, 3))
    rotation = _euler(*angles)
    scaling = np.diag(rng.uniform(1 - scale, 1 + scale, 3))
    matrix = rotation @ scaling
    shift = rng.uniform(-shift_mm, shift_mm, 3)
    coarse = rng.standard_normal((3, control, control, control)).astype(np.float32) * elastic_mm
    zoom = [s / control for s in shape]
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij", copy=False)
    coords = np.empty((3, *shape), dtype=np.float32)
    for axis in range(3):
        field = ndimage.zoom(coarse[axis], zoom, order=1, mode="nearest")[
            : shape[0], : shape[1], : shape[2]
        ]
        coords[axis] = field + centre[axis] + shift[axis]
        for k in range(3):
            coords[axis] += matrix[axis, k] * (grids[k] - centre[k])
    return coords


def warp(volume: np.ndarray, coords: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
    return ndimage.map_coordinates(volume, coords, order=order, mode="constant", cval=cval).astype(
        np.float32
    )


def bias_field(shape, rng: np.random.Generator, strength: float = 0.3) -> np.ndarray:
    """A smooth multiplicative field around 1 (MRI receive-coil inhomogeneity)."""
    coarse = rng.standard_normal((4, 4, 4)).astype(np.float32)
    field = ndimage.zoom(coarse, [s / 4 for s in shape], order=3, mode="nearest")
    field = field[: shape[0], : shape[1], : shape[2]]
    field /= max(float(np.abs(field).max()), 1e-6)
    return np.exp(field * rng.uniform(0, strength)).astype(np.float32)


def degrade_resolution(volume: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Simulate thick slices or in-plane down-sampling, then return to the 1 mm grid."""
    choice = rng.choice(["none", "thick", "downsample"], p=[0.4, 0.35, 0.25])
    if choice == "none":
        return volume, "1mm"
    if choice == "thick":
        axis = int(rng.integers(3))
        thickness = float(rng.uniform(2.0, 5.0))
        factors = [1.0, 1.0, 1.0]
        factors[axis] = 1 / thickness
        label = f"thick {thickness:.1f}mm axis {axis}"
    else:
        factor = float(rng.uniform(1.2, 2.0))
        factors = [1 / factor] * 3
        label = f"downsample {factor:.2f}x"
    sigma = [0.4 / f if f < 1 else 0 for f in factors]
    small = ndimage.zoom(ndimage.gaussian_filter(volume, sigma), factors, order=1)
    back = ndimage.zoom(
        small, [a / b for a, b in zip(volume.shape, small.shape, strict=True)], order=1
    )
    out = np.zeros_like(volume)
    region = tuple(slice(0, min(a, b)) for a, b in zip(volume.shape, back.shape, strict=True))
    out[region] = back[region]
    return out, label


def add_noise(volume: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
    """Rician noise: magnitude of a complex signal with Gaussian noise of std ``level``."""
    real = volume + rng.normal(0, level, volume.shape).astype(np.float32)
    imag = rng.normal(0, level, volume.shape).astype(np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def contrast_gamma(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gamma and global contrast on the robust [0, 1] range."""
    top = float(np.percentile(volume, 99.8)) or 1.0
    scaled = np.clip(volume / top, 0, None)
    gamma = float(np.exp(rng.uniform(-0.35, 0.35)))
    return (scaled**gamma * top * rng.uniform(0.7, 1.4)).astype(np.float32)


def blur(volume: np.ndarray, rng: np.random.Generator, sigma_mm=(0.6, 2.0)) -> np.ndarray:
    """Isotropic Gaussian blur (motion, low-field scanners, heavy interpolation)."""
    return ndimage.gaussian_filter(volume, float(rng.uniform(*sigma_mm))).astype(np.float32)


def monotonic_remap(volume: np.ndarray, rng: np.random.Generator, knots: int = 5) -> np.ndarray:
    """A random increasing intensity curve on the robust range: other T1 sequences and
    scanners change grey/white/CSF contrast but keep their order (CSF < grey < white)."""
    top = float(np.percentile(volume, 99.8)) or 1.0
    steps = rng.uniform(0.4, 1.6, knots - 1)
    levels = np.concatenate([[0.0], np.cumsum(steps) / steps.sum()])
    grid = np.linspace(0.0, 1.0, knots)
    scaled = np.clip(volume / top, 0, None)
    inside = np.interp(np.minimum(scaled, 1.0), grid, levels)
    return ((inside + np.maximum(scaled - 1.0, 0)) * top).astype(np.float32)


def _euler(a: float, b: float, c: float) -> np.ndarray:
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx
