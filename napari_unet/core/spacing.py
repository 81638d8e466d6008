"""Running a model at the pixel spacing it was trained at.

A slice network learns how large a lesion, a sulcus or a ventricle is in pixels. The
bundled models saw 1 mm pixels; a clinical T1 with 0.5 mm pixels shows everything twice
as large, and a 2 mm scan half as large, and the network misreads both (on the sample
brain: Dice 0.21 at 0.5 mm and 0.38 at 2 mm against 0.92 at 1 mm; docs/model-card.md).
As nnU-Net does, each slice is therefore resampled in-plane to the model's spacing, and
the answer is resampled back, as logits, onto the scan's own grid, so the mask stays in
the scan's voxels. Slices are not resampled along the slice axis; a 2.5D model's neighbours
are instead taken at the distance it was trained at (:func:`neighbour_step`, used by
:mod:`.context`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

TOLERANCE = 0.05  # closer than 5 % to the model's spacing: the slice is used as it is
_CHUNK = 64  # slices resampled per call, to bound the temporary memory
_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before taking logits


def check_spacing(spacing: Sequence[float], what: str = "pixel spacing") -> tuple[float, ...]:
    """``spacing`` as floats; a clear error when a value is not a positive finite number."""
    values = tuple(float(value) for value in spacing)
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"The {what} must be positive numbers of millimetres, got {tuple(spacing)}; "
            "check the scan's header (pixdim / PixelSpacing) or the layer's scale"
        )
    return values


def inplane_spacing(spacing: Sequence[float], axis: int) -> tuple[float, float]:
    """The (row, column) pixel spacing of slices along ``axis`` of a (Z, Y, X) spacing."""
    rows, cols = (s for k, s in enumerate(check_spacing(spacing, "voxel spacing")) if k != axis)
    return rows, cols


def resampled_shape(
    shape_hw: Sequence[int], spacing_hw: Sequence[float], target_mm: float | None
) -> tuple[int, int] | None:
    """The (H, W) a slice of ``shape_hw`` pixels of ``spacing_hw`` mm has at ``target_mm``
    mm per pixel, or None when no resampling is needed (no target, or within 5 %)."""
    if target_mm is None:
        return None
    spacing_hw = check_spacing(spacing_hw)
    (target,) = check_spacing([target_mm], "model's pixel spacing")
    if all(abs(s / target - 1.0) <= TOLERANCE for s in spacing_hw):
        return None
    return tuple(max(1, round(n * s / target)) for n, s in zip(shape_hw, spacing_hw, strict=True))


def resample_inplane(array: np.ndarray, shape_hw: Sequence[int]) -> np.ndarray:
    """``array`` (..., H, W) resampled to (..., *shape_hw) as float32.

    Bilinear between pixel centres, so a grid and its resampled copy cover the same
    extent; anti-aliased where it shrinks, so fine detail does not alias. Works through
    the slices in chunks, so a view of a large integer volume is never copied whole.
    """
    height, width = (int(n) for n in shape_hw)
    leading = array.shape[:-2]
    out = np.empty((*leading, height, width), dtype=np.float32)
    flat_out = out.reshape(-1, height, width)
    positions = list(np.ndindex(*leading))
    shrinking = height < array.shape[-2] or width < array.shape[-1]
    with torch.inference_mode():
        for start in range(0, len(positions), _CHUNK):
            chunk = positions[start : start + _CHUNK]
            part = np.stack([np.asarray(array[p], dtype=np.float32) for p in chunk])
            resized = torch.nn.functional.interpolate(
                torch.from_numpy(part)[:, None],
                size=(height, width),
                mode="bilinear",
                align_corners=False,
                antialias=shrinking,
            )
            flat_out[start : start + len(chunk)] = resized[:, 0].numpy()
    return out


def training_pixel_spacing(volume_spacings: Sequence[Sequence[float]]) -> float:
    """The pixel spacing a model learns from axial slices of volumes with these (Z, Y, X)
    spacings: the median in-plane spacing, as nnU-Net takes the median as its target."""
    inplane = [value for spacing in volume_spacings for value in check_spacing(spacing)[1:]]
    if not inplane:
        raise ValueError("No training volumes, so no pixel spacing to record")
    return round(float(np.median(inplane)), 4)


def resample_probability(prob: np.ndarray, shape_hw: Sequence[int]) -> np.ndarray:
    """Probabilities (..., H, W) resampled to (..., *shape_hw), interpolated as logits.

    Interpolating the probabilities themselves spreads a lesion's faint edge outward by up
    to a coarse pixel, and the post-processing that grows lesions into low probability
    then over-draws them (on the sample brain at 2 mm pixels: 73 mL drawn against 63 and
    Dice 0.874 against 0.918; scripts/spacing_check.py).
    """
    clipped = np.clip(prob, _EPS, 1.0 - _EPS, dtype=np.float32)
    logits = resample_inplane(np.log(clipped / (1.0 - clipped)), shape_hw)
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def training_slice_spacing(volume_spacings: Sequence[Sequence[float]]) -> float:
    """The distance between the neighbouring axial slices a 2.5D model learns from: the
    median slice spacing of its training volumes' (Z, Y, X) spacings."""
    along = [check_spacing(spacing)[0] for spacing in volume_spacings]
    if not along:
        raise ValueError("No training volumes, so no slice spacing to record")
    return round(float(np.median(along)), 4)


def neighbour_step(model_mm: float | None, slice_mm: float) -> float:
    """How many of the scan's slices apart a 2.5D model's neighbours are taken: its training
    slice distance over the scan's slice spacing; 1 when either is unknown or within 5 %."""
    if model_mm is None:
        return 1.0
    (slice_mm,) = check_spacing([slice_mm], "slice spacing")
    step = float(model_mm) / slice_mm
    return 1.0 if abs(step - 1.0) <= TOLERANCE else step
