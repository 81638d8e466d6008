"""Mask correction helpers: pure functions on label arrays, for a slice or a whole volume.

Each helper returns a new mask; the GUI applies the difference through napari's
undoable ``Labels.data_setitem``. 2D helpers work on one slice along any axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

if TYPE_CHECKING:
    from .lesion_filter import LesionFilter


def _structure(ndim: int) -> np.ndarray:
    return ndimage.generate_binary_structure(ndim, ndim)


def remove_small_components(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop connected components (8/26-connected) smaller than ``min_voxels``."""
    binary = np.asarray(mask) > 0
    labels, count = ndimage.label(binary, structure=_structure(binary.ndim))
    if count == 0:
        return np.zeros_like(mask)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_voxels
    keep[0] = False
    return np.where(keep[labels], mask, 0).astype(mask.dtype)


def remove_thin_components(
    mask: np.ndarray, min_extent_mm: float, spacing: tuple[float, ...], axis: int = 0
) -> np.ndarray:
    """Drop 26-connected components spanning less than ``min_extent_mm`` along ``axis``.

    A slice-by-slice network's false positives are often one or two slices thick, while a
    real lesion continues through neighbouring slices; the extent is in millimetres, so
    thick-slice scans (where one slice may be 5 mm) are treated fairly.
    """
    binary = np.asarray(mask) > 0
    labels, count = ndimage.label(binary, structure=_structure(binary.ndim))
    if count == 0:
        return np.zeros_like(mask)
    keep = np.zeros(count + 1, dtype=bool)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        keep[index] = (box[axis].stop - box[axis].start) * spacing[axis] >= min_extent_mm
    return np.where(keep[labels], mask, 0).astype(mask.dtype)


def grow_into_probability(
    mask: np.ndarray, probability: np.ndarray, grow_threshold: float
) -> np.ndarray:
    """Hysteresis: each component of ``mask`` grows to its component of ``p >= grow_threshold``.

    Only components of the lower threshold that touch the mask are added, so no new
    component can appear; kept lesions extend into their lower-probability border.
    """
    binary = np.asarray(mask) > 0
    probability = np.asarray(probability)
    if probability.shape != binary.shape:
        raise ValueError(
            f"Growing a mask needs probabilities of the same shape; got {probability.shape} "
            f"for a mask of {binary.shape}"
        )
    if not binary.any():
        return mask
    labels, count = ndimage.label(probability >= grow_threshold, structure=_structure(binary.ndim))
    if count == 0:
        return mask
    keep = np.zeros(count + 1, dtype=bool)
    keep[np.unique(labels[binary])] = True
    keep[0] = False
    grown = keep[labels] & ~binary
    return np.where(grown, 1, mask).astype(mask.dtype)


def grow_by_intensity(
    mask: np.ndarray,
    image: np.ndarray,
    max_mm: float,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
    ring_voxels: int = 3,
) -> np.ndarray:
    """Grow each lesion through connected voxels as dark as it is, up to ``max_mm`` away.

    Per 26-connected component: the cut is the midpoint of the component's median
    intensity and that of a ``ring_voxels`` ring around it; the component extends through
    voxels at or below the cut that connect to it, within ``max_mm`` of it. For lesions
    darker than their surroundings (chronic infarcts on T1).
    """
    binary = np.asarray(mask) > 0
    image = np.asarray(image)
    if image.shape != binary.shape:
        raise ValueError(
            f"Growing a mask by intensity needs an image of the same shape; got "
            f"{image.shape} for a mask of {binary.shape}"
        )
    labels, count = ndimage.label(binary, structure=_structure(binary.ndim))
    if count == 0 or max_mm <= 0:
        return mask
    reach = [int(np.ceil(max_mm / s)) + ring_voxels + 1 for s in spacing]
    grown = binary.copy()
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        window = tuple(
            slice(max(b.start - r, 0), min(b.stop + r, n))
            for b, r, n in zip(box, reach, binary.shape, strict=True)
        )
        lesion = labels[window] == index
        values = image[window]
        ring = ndimage.binary_dilation(lesion, iterations=ring_voxels) & ~binary[window]
        if not ring.any():
            continue
        cut = 0.5 * (float(np.median(values[lesion])) + float(np.median(values[ring])))
        near = ndimage.distance_transform_edt(~lesion, sampling=spacing) <= max_mm
        allowed = (near & (values <= cut)) | lesion
        reached = ndimage.binary_propagation(
            lesion, structure=_structure(binary.ndim), mask=allowed
        )
        grown[window] |= reached
    return np.where(grown & ~binary, 1, mask).astype(mask.dtype)


def model_postprocess(
    mask: np.ndarray,
    min_voxels: int = 0,
    min_extent_mm: float = 0.0,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
    probability: np.ndarray | None = None,
    grow_threshold: float | None = None,
    lesion_filter: LesionFilter | None = None,
) -> np.ndarray:
    """A model's declared post-processing of a whole 3D mask (display order, axial first).

    Small and thin components are dropped first; a ``lesion_filter`` (with the
    ``probability`` map) then keeps the components it scores as lesions; with
    ``grow_threshold``, the kept ones grow by hysteresis (``grow_into_probability``).
    """
    if mask.ndim != 3:
        return mask
    if min_voxels > 0:
        mask = remove_small_components(mask, min_voxels)
    if min_extent_mm > 0:
        mask = remove_thin_components(mask, min_extent_mm, spacing, axis=0)
    if lesion_filter is not None:
        if probability is None:
            raise ValueError("a lesion filter needs the probability map the mask came from")
        mask = lesion_filter.apply(mask, probability, spacing, axis=0)
    if grow_threshold is not None and probability is not None:
        mask = grow_into_probability(mask, probability, grow_threshold)
    return mask


def min_voxels_for_ml(ml: float, spacing: tuple[float, ...]) -> int:
    """Convert a minimum lesion volume in mL to a voxel count for this spacing."""
    return int(np.ceil(ml * 1000.0 / float(np.prod(spacing))))


def fill_holes(mask: np.ndarray, label: int = 1) -> np.ndarray:
    """Fill enclosed background inside the mask (in 2D for a slice, 3D for a volume)."""
    filled = ndimage.binary_fill_holes(np.asarray(mask) > 0)
    return np.where(filled & (mask == 0), label, mask).astype(mask.dtype)


def grow(mask: np.ndarray, label: int = 1, voxels: int = 1) -> np.ndarray:
    """Dilate by ``voxels`` (face-connected steps), adding ``label`` where it was background."""
    grown = ndimage.binary_dilation(np.asarray(mask) > 0, iterations=voxels)
    return np.where(grown & (mask == 0), label, mask).astype(mask.dtype)


def shrink(mask: np.ndarray, voxels: int = 1) -> np.ndarray:
    """Erode by ``voxels``; voxels that leave the mask become background."""
    kept = ndimage.binary_erosion(np.asarray(mask) > 0, iterations=voxels)
    return np.where(kept, mask, 0).astype(mask.dtype)


def copy_neighbour_slice(volume: np.ndarray, axis: int, index: int, offset: int) -> np.ndarray:
    """The slice at ``index + offset`` along ``axis`` (what 'copy from neighbour' pastes)."""
    source = index + offset
    if not 0 <= source < volume.shape[axis]:
        raise ValueError(f"There is no slice {source} along axis {axis}")
    return np.take(volume, source, axis=axis).copy()


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Negative inside, positive outside, zero-crossing at the border (in pixels)."""
    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return (outside - inside).astype(np.float32)


def interpolate_slices(
    volume: np.ndarray, axis: int, first: int, last: int, label: int = 1
) -> np.ndarray:
    """Shape-based interpolation between two annotated slices (as 3D Slicer's "Fill between").

    Returns a copy of ``volume`` where every slice strictly between ``first`` and
    ``last`` is the zero level set of the linearly blended signed distance maps.
    """
    if last < first:
        first, last = last, first
    if last - first < 2:
        raise ValueError("Annotate two slices with at least one empty slice between them")
    a = np.take(volume, first, axis=axis) > 0
    b = np.take(volume, last, axis=axis) > 0
    if not a.any() or not b.any():
        raise ValueError(f"Slices {first} and {last} must both contain a mask to fill between")
    sdf_a, sdf_b = _signed_distance(a), _signed_distance(b)
    out = volume.copy()
    for index in range(first + 1, last):
        t = (index - first) / (last - first)
        blended = (1 - t) * sdf_a + t * sdf_b
        region = [slice(None)] * volume.ndim
        region[axis] = index
        out[tuple(region)] = np.where(blended <= 0, label, 0)
    return out


def annotated_slices(volume: np.ndarray, axis: int) -> list[int]:
    """Indices of slices along ``axis`` that contain any label."""
    other = tuple(a for a in range(volume.ndim) if a != axis)
    return [int(i) for i in np.flatnonzero(np.any(volume > 0, axis=other))]


@dataclass(frozen=True)
class Lesion:
    """One connected lesion: its size and where to look."""

    label: int
    voxels: int
    volume_ml: float
    centroid: tuple[float, float, float]


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box holding every nonzero voxel (None for an empty mask)."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(np.any(mask, axis=others))
        if present.size == 0:
            return None
        box.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(box)


def lesion_table(mask: np.ndarray, spacing: tuple[float, ...]) -> list[Lesion]:
    """Connected lesions (26-connected), largest first.

    Labelled inside the mask's bounding box: the same lesions, numbering and centroids as
    labelling the whole volume, at a fraction of the cost (the readout runs after edits).
    """
    binary = np.asarray(mask) > 0
    box = bounding_box(binary)
    if box is None:
        return []
    crop = binary[box]
    labels, count = ndimage.label(crop, structure=_structure(crop.ndim))
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(crop, labels, index)
    centroids = ndimage.center_of_mass(crop, labels, index)
    offset = [s.start for s in box]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    lesions = [
        Lesion(
            int(i),
            int(n),
            float(n) * voxel_ml,
            tuple(float(c) + o for c, o in zip(centre, offset, strict=True)),
        )
        for i, n, centre in zip(index, sizes, centroids, strict=True)
    ]
    return sorted(lesions, key=lambda lesion: -lesion.voxels)


def slice_areas_mm2(mask: np.ndarray, axis: int, spacing: tuple[float, ...]) -> np.ndarray:
    """Lesion area of every slice along ``axis`` in mm²."""
    other = tuple(a for a in range(mask.ndim) if a != axis)
    pixel = float(np.prod([spacing[a] for a in other]))
    return np.count_nonzero(np.asarray(mask) > 0, axis=other) * pixel
