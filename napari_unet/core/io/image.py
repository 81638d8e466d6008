"""The in-memory image every reader returns: display-ordered data plus its geometry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ImageReadError
from .geometry import ImageGeometry

# Refuse before allocating anything larger than this (voxels x bytes).
MAX_BYTES = 8 * 1024**3
MAX_DIM = 16384


@dataclass
class LoadedImage:
    """Image data in display order (Z, Y, X) or (C, Z, Y, X), with what restores the file grid."""

    data: np.ndarray
    geometry: ImageGeometry
    path: Path
    channel_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return case_name(self.path)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[-3:])

    @property
    def n_channels(self) -> int:
        return 1 if self.data.ndim == 3 else self.data.shape[0]

    def metadata(self) -> dict:
        """What a napari layer keeps in ``metadata['napari_unet']`` so the writer can restore it."""
        return {
            "geometry": self.geometry.to_metadata(),
            "source": str(self.path),
            "channel_names": list(self.channel_names),
        }


def case_name(path: str | Path) -> str:
    """File name without ``.nii.gz``, ``.nii`` or any image suffix (folders keep their name)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".tiff", ".tif", ".png", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_size(path: Path, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse absurd dimensions before any allocation."""
    if any(int(s) < 1 for s in shape):
        raise ImageReadError(path, f"the header declares an empty dimension {tuple(shape)}")
    if (
        any(int(s) > MAX_DIM for s in shape)
        or np.prod(shape, dtype=np.float64) * itemsize > MAX_BYTES
    ):
        raise ImageReadError(
            path,
            f"the header declares dimensions {tuple(int(s) for s in shape)} "
            f"({np.prod(shape, dtype=np.float64) * itemsize / 1e9:.1f} GB); refusing to allocate. "
            "The header is probably corrupt.",
        )


def sanitize(data: np.ndarray, path: Path, warnings: list[str]) -> np.ndarray:
    """Replace NaN/Inf voxels by the finite minimum, recording a warning."""
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        count = int(bad.sum())
        if count:
            finite = data[~bad]
            fill = float(finite.min()) if finite.size else 0.0
            data = np.where(bad, fill, data).astype(data.dtype, copy=False)
            warnings.append(f"{path}: {count} NaN/Inf voxels were set to {fill:g}")
    return data
