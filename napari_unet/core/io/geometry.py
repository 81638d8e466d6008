"""Voxel geometry: the exact reorientation between a file's voxel order and the display.

napari shows array axes (0, 1, 2) as (slider, rows, columns). We display every
brain as axial slices, anterior at the top, in the **radiological convention**
(the patient's right on the screen's left), with the slider going from inferior
to superior. In nibabel axis codes the display array is ``("S", "P", "L")``.

Only flips and axis permutations are applied (never resampling), so the
writer can undo them exactly, also for oblique affines.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

DISPLAY_AXCODES = ("S", "P", "L")
AXIS_NAMES = {
    "S": "axial",
    "I": "axial",
    "A": "coronal",
    "P": "coronal",
    "L": "sagittal",
    "R": "sagittal",
}


@dataclass
class ImageGeometry:
    """Where each voxel of the original file lies, and how the display array relates to it."""

    affine: np.ndarray  # 4x4 voxel->RAS+ mm of the original file
    shape: tuple[int, ...]  # original spatial shape (i, j, k)
    transform: np.ndarray  # nibabel orientation transform: original -> display
    header: bytes | None = None  # raw NIfTI-1 header of the source, when there is one
    source_format: str = "nifti"

    @classmethod
    def from_affine(
        cls,
        affine: np.ndarray,
        shape: tuple[int, ...],
        header: bytes | None = None,
        source_format: str = "nifti",
        display_axcodes: tuple[str, str, str] = DISPLAY_AXCODES,
    ) -> ImageGeometry:
        affine = np.asarray(affine, dtype=np.float64)
        source = ornt.io_orientation(affine)
        target = ornt.axcodes2ornt(display_axcodes)
        transform = ornt.ornt_transform(source, target)
        return cls(affine, tuple(int(s) for s in shape[:3]), transform, header, source_format)

    @classmethod
    def identity(cls, shape: tuple[int, ...], spacing=(1.0, 1.0, 1.0), source_format="2d"):
        """For images with no world geometry (PNG/TIFF): the display order *is* the file order."""
        affine = np.diag([*spacing, 1.0])
        transform = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
        return cls(affine, tuple(int(s) for s in shape[:3]), transform, None, source_format)

    # -- array transforms ---------------------------------------------------------------
    def to_display(self, data: np.ndarray) -> np.ndarray:
        """Original voxel order -> display order (leading channel axes are kept)."""
        return _apply(data, self.transform)

    def to_original(self, data: np.ndarray) -> np.ndarray:
        """Display order -> original voxel order; exactly undoes :meth:`to_display`."""
        inverse = np.zeros_like(self.transform)
        for original_axis, (display_axis, flip) in enumerate(self.transform):
            inverse[int(display_axis)] = [original_axis, flip]
        return _apply(data, inverse)

    # -- derived geometry ---------------------------------------------------------------
    @property
    def display_shape(self) -> tuple[int, int, int]:
        axes = self.transform[:, 0].astype(int)
        shape = [0, 0, 0]
        for original_axis, display_axis in enumerate(axes):
            shape[display_axis] = self.shape[original_axis]
        return tuple(shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the original axes."""
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def display_spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the display axes: the napari layer scale."""
        out = [0.0, 0.0, 0.0]
        for original_axis, display_axis in enumerate(self.transform[:, 0].astype(int)):
            out[display_axis] = self.spacing[original_axis]
        return tuple(out)

    @property
    def display_affine(self) -> np.ndarray:
        """Voxel->RAS affine of the display array."""
        return self.affine @ ornt.inv_ornt_aff(self.transform, self.shape)

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def display_axis_name(self, display_axis: int) -> str:
        """``axial``, ``coronal`` or ``sagittal`` for a display axis, from the affine."""
        codes = ornt.aff2axcodes(self.display_affine)
        return AXIS_NAMES[codes[display_axis]]

    def nifti_header(self) -> nib.Nifti1Header | None:
        if self.header is None:
            return None
        return nib.Nifti1Header(binaryblock=self.header)

    # -- metadata round trip (napari layer.metadata must hold plain values) --------------
    def to_metadata(self) -> dict[str, Any]:
        return {
            "affine": self.affine.tolist(),
            "shape": list(self.shape),
            "transform": self.transform.tolist(),
            "header": base64.b64encode(self.header).decode() if self.header else None,
            "source_format": self.source_format,
            "display_axcodes": list(ornt.aff2axcodes(self.display_affine)),
        }

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> ImageGeometry:
        header = meta.get("header")
        return cls(
            np.asarray(meta["affine"], dtype=np.float64),
            tuple(meta["shape"]),
            np.asarray(meta["transform"], dtype=float),
            base64.b64decode(header) if header else None,
            meta.get("source_format", "nifti"),
        )


def _apply(data: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply an orientation transform to the last three axes of ``data``."""
    extra = data.ndim - 3
    if extra < 0:
        raise ValueError(f"Expected at least 3 dimensions, got shape {data.shape}")
    if extra == 0:
        return np.ascontiguousarray(ornt.apply_orientation(data, transform))
    moved = np.moveaxis(data, list(range(extra)), list(range(3, 3 + extra)))
    oriented = ornt.apply_orientation(moved, transform)
    return np.ascontiguousarray(
        np.moveaxis(oriented, list(range(3, 3 + extra)), list(range(extra)))
    )
