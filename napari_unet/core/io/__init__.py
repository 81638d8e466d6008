"""Brain image I/O that keeps geometry: NIfTI, DICOM series and 2D slices in; masks out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dicom import looks_like_dicom_folder, read_dicom_series
from .errors import GeometryMismatchError, ImageReadError, ImageWriteError
from .geometry import DISPLAY_AXCODES, ImageGeometry
from .image import LoadedImage, case_name
from .nifti import is_nifti_path, read_nifti
from .slices2d import is_2d_path, read_slices
from .writers import (
    write_labels_nifti,
    write_png_slices,
    write_probability_nifti,
    write_tiff_stack,
)

__all__ = [
    "DISPLAY_AXCODES",
    "GeometryMismatchError",
    "ImageGeometry",
    "ImageReadError",
    "ImageWriteError",
    "LoadedImage",
    "can_read",
    "case_name",
    "check_same_grid",
    "read_image",
    "read_channels",
    "write_labels_nifti",
    "write_png_slices",
    "write_probability_nifti",
    "write_tiff_stack",
]


def can_read(path: str | Path) -> bool:
    """Whether some reader here claims ``path`` (cheap: looks at names and magic bytes)."""
    return is_nifti_path(path) or is_2d_path(path) or looks_like_dicom_folder(path)


def read_image(
    path: str | Path, volume: int | None = None, all_volumes: bool = False
) -> LoadedImage:
    """Read any supported image; raises :class:`ImageReadError` naming the file."""
    path = Path(path)
    if is_nifti_path(path):
        return read_nifti(path, volume=volume, all_volumes=all_volumes)
    if is_2d_path(path):
        return read_slices(path)
    if path.is_dir():
        return read_dicom_series(path)
    raise ImageReadError(
        path, "unsupported file type (expected .nii, .nii.gz, .png, .tif, .tiff or a DICOM folder)"
    )


def check_same_grid(image: LoadedImage, reference: LoadedImage, advice: str) -> None:
    """Raise :class:`GeometryMismatchError` unless both share one voxel grid (shape + affine)."""
    if image.geometry.shape != reference.geometry.shape:
        raise GeometryMismatchError(
            f"{image.path}: shape {image.geometry.shape} differs from {reference.path} "
            f"{reference.geometry.shape}; {advice}"
        )
    if not np.allclose(image.geometry.affine, reference.geometry.affine, atol=1e-3):
        raise GeometryMismatchError(
            f"{image.path}: its affine differs from {reference.path}'s, so they are not in one "
            f"voxel grid; {advice}"
        )


def read_channels(paths: list[str | Path]) -> LoadedImage:
    """Load co-registered sequences (e.g. DWI + ADC) as channels of one image.

    Shapes and affines must agree; nothing is ever resampled.
    """
    images = [read_image(p) for p in paths]
    reference = images[0]
    for other in images[1:]:
        check_same_grid(
            other, reference, "register the sequences first (this tool never resamples silently)"
        )
    data = np.stack([im.data if im.data.ndim == 3 else im.data[0] for im in images])
    names = [case_name(p) for p in paths]
    return LoadedImage(
        data, reference.geometry, reference.path, names, sum((im.warnings for im in images), [])
    )
