"""npe2 writers: labels and probability maps back into the source image's voxel grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.io import ImageGeometry, write_labels_nifti, write_probability_nifti
from .layers import geometry_from_metadata


def _geometry(data: np.ndarray, meta: dict[str, Any]) -> ImageGeometry:
    geometry = geometry_from_metadata(meta.get("metadata"))
    if geometry is None:  # a layer made in napari: keep its scale, identity orientation
        scale = tuple(meta.get("scale", (1.0, 1.0, 1.0)))[-3:]
        return ImageGeometry.identity(np.shape(data)[-3:], spacing=scale, source_format="napari")
    return geometry


def _nifti_path(path: str) -> Path:
    return Path(path if path.endswith((".nii", ".nii.gz")) else f"{path}.nii.gz")


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Save a Labels layer as uint8/uint16 NIfTI with the source's shape, affine and codes.

    napari's save dialog has already asked before replacing a file, so overwrite here.
    """
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    target = write_labels_nifti(data, _geometry(data, meta), _nifti_path(path), overwrite=True)
    return [str(target)]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """Save an Image layer (e.g. probabilities) as float32 NIfTI in the source geometry."""
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    target = write_probability_nifti(data, _geometry(data, meta), _nifti_path(path), overwrite=True)
    return [str(target)]
