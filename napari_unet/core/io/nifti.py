"""NIfTI reading (nibabel) with clear errors for every kind of broken file."""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from .errors import ImageReadError
from .geometry import ImageGeometry
from .image import LoadedImage, check_size, sanitize

log = logging.getLogger(__name__)
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti_path(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_nifti(
    path: str | Path, volume: int | None = None, all_volumes: bool = False
) -> LoadedImage:
    """Read a 2D/3D/4D NIfTI file into display order.

    For 4D files pass ``volume`` to load one volume, or ``all_volumes=True`` to load
    them as channels. Without either, a 4D file with one volume loads as 3D and
    a longer one raises an error that says how to choose.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    try:
        image = nib.load(str(path))
    except (ImageFileError, gzip.BadGzipFile, zlib.error, EOFError, OSError) as exc:
        raise ImageReadError(path, f"not a readable NIfTI file ({_short(exc)})") from exc
    except Exception as exc:  # nibabel raises HeaderDataError, ValueError, ...
        raise ImageReadError(path, f"invalid NIfTI header ({_short(exc)})") from exc
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageReadError(path, f"expected NIfTI, found {type(image).__name__}")
    shape = tuple(int(s) for s in image.shape)
    itemsize = np.dtype(image.get_data_dtype()).itemsize
    check_size(path, shape, max(itemsize, 4))
    _check_file_holds_data(path, image, shape, itemsize)
    try:
        data = np.asanyarray(image.dataobj)
    except (EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError) as exc:
        raise ImageReadError(
            path, f"the data are truncated or corrupt (a partial download?) ({_short(exc)})"
        ) from exc
    data = _to_spatial(path, data, volume, all_volumes)
    warnings: list[str] = []
    if not np.issubdtype(data.dtype, np.floating):
        data = data.astype(np.float32) if data.dtype.itemsize >= 4 else data
    data = sanitize(data, path, warnings)
    for message in warnings:
        log.warning(message)
    geometry = ImageGeometry.from_affine(
        image.affine,
        data.shape[-3:],
        header=image.header.binaryblock if isinstance(image, nib.Nifti1Image) else None,
    )
    channel_names = [f"volume {i}" for i in range(data.shape[0])] if data.ndim == 4 else []
    return LoadedImage(geometry.to_display(data), geometry, path, channel_names, warnings)


def _to_spatial(path: Path, data: np.ndarray, volume: int | None, all_volumes: bool) -> np.ndarray:
    """Return (X, Y, Z) or (C, X, Y, Z) data in the file's voxel order."""
    if data.ndim == 2:
        return data[:, :, None]
    if data.ndim == 3:
        return data
    if data.ndim == 5 and data.shape[3] == 1:
        data = data[:, :, :, 0]
    if data.ndim != 4:
        raise ImageReadError(
            path, f"{data.ndim}D NIfTI files are not supported (shape {data.shape})"
        )
    n = data.shape[3]
    if all_volumes:
        return np.moveaxis(np.asarray(data), 3, 0)
    if volume is None:
        if n == 1:
            return data[..., 0]
        raise ImageReadError(
            path,
            f"the file holds {n} volumes (4D shape {data.shape}); choose one with volume=INDEX "
            "(CLI: --volume INDEX) or load all as channels (--all-volumes)",
        )
    if not -n <= volume < n:
        raise ImageReadError(path, f"volume {volume} does not exist; the file has {n} (0..{n - 1})")
    return np.asarray(data[..., volume])


def _check_file_holds_data(path: Path, image, shape, itemsize: int) -> None:
    """An uncompressed file must be long enough for the data its header declares."""
    if str(path).lower().endswith(".gz"):
        return
    offset = int(image.header.get("vox_offset", 352))
    needed = offset + int(np.prod(shape)) * itemsize
    actual = path.stat().st_size
    if actual < needed:
        raise ImageReadError(
            path,
            f"the header declares {tuple(shape)} voxels ({needed} bytes with the header) but the "
            f"file has only {actual} bytes: the dimensions disagree with the data, or the file "
            "is truncated",
        )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
