"""Writers that put masks back in the source image's exact voxel grid.

Every write goes to a temporary file in the target folder and is then renamed,
so an interrupted save leaves any old file intact. Existing files are never
replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

from .errors import ImageWriteError
from .geometry import ImageGeometry


def atomic_write(path: str | Path, write: Callable[[str], None], overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; never a half-written file."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise ImageWriteError(path, "the file exists; choose another name or allow overwriting")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=f".part{suffix}", dir=path.parent
        )
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; saved files get normal modes
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write here ({exc.strerror or exc})") from exc
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ImageWriteError(
            path, f"the write failed ({exc.strerror or exc}); any earlier file is unchanged"
        ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def label_dtype(labels: np.ndarray) -> np.dtype:
    """uint8, or uint16 where labels exceed 255."""
    top = int(labels.max()) if labels.size else 0
    if labels.size and int(labels.min()) < 0:
        raise ValueError("labels must be non-negative")
    if top > 65535:
        raise ValueError(f"label {top} does not fit in uint16")
    return np.dtype(np.uint8 if top <= 255 else np.uint16)


def to_nifti(display_data: np.ndarray, geometry: ImageGeometry, dtype) -> nib.Nifti1Image:
    """A NIfTI image in the source grid: same shape, affines and codes as the source header."""
    if tuple(display_data.shape[-3:]) != tuple(geometry.display_shape):
        raise ValueError(
            f"data shape {display_data.shape} does not match the image grid "
            f"{geometry.display_shape}"
        )
    data = geometry.to_original(np.asarray(display_data)).astype(dtype)
    header = geometry.nifti_header()
    if header is None:
        image = nib.Nifti1Image(data, geometry.affine)
        image.set_sform(geometry.affine, code=1)
        image.set_qform(geometry.affine, code=1)
        return image
    if int(header["dim"][0]) == 2 and data.shape[2] == 1:
        data = data[:, :, 0]
    header = header.copy()
    header.set_data_dtype(dtype)
    header.set_slope_inter(1.0, 0.0) if np.issubdtype(dtype, np.floating) else None
    image = nib.Nifti1Image(data, None, header=header)
    sform, sform_code = header.get_sform(coded=True)
    qform, qform_code = header.get_qform(coded=True)
    image.set_sform(sform if sform is not None else geometry.affine, code=int(sform_code))
    image.set_qform(qform if qform is not None else geometry.affine, code=int(qform_code))
    if np.issubdtype(dtype, np.integer):
        image.header["scl_slope"], image.header["scl_inter"] = np.nan, np.nan
    image.header["cal_min"], image.header["cal_max"] = 0, 0
    image.header["descrip"] = b"napari-unet"
    return image


def write_labels_nifti(
    labels: np.ndarray, geometry: ImageGeometry, path: str | Path, overwrite: bool = False
) -> Path:
    """Save a display-ordered label volume as ``.nii.gz`` in the source grid."""
    labels = np.asarray(labels)
    image = to_nifti(labels, geometry, label_dtype(labels))
    return atomic_write(path, lambda tmp: nib.save(image, tmp), overwrite)


def write_probability_nifti(
    prob: np.ndarray, geometry: ImageGeometry, path: str | Path, overwrite: bool = False
) -> Path:
    """Save a float32 probability map in the source grid."""
    image = to_nifti(np.asarray(prob, dtype=np.float32), geometry, np.float32)
    return atomic_write(path, lambda tmp: nib.save(image, tmp), overwrite)


def write_tiff_stack(labels: np.ndarray, path: str | Path, overwrite: bool = False) -> Path:
    """Save a (Z, Y, X) label stack as one multi-page TIFF."""
    import tifffile

    labels = np.asarray(labels)
    data = labels.astype(label_dtype(labels))
    return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, data), overwrite)


def write_png_slices(
    labels: np.ndarray, folder: str | Path, stem: str, overwrite: bool = False
) -> list[Path]:
    """Save one PNG per slice, ``<stem>_z0000.png`` ..., into ``folder``."""
    import imageio.v3 as iio

    labels = np.asarray(labels)
    data = labels.astype(label_dtype(labels))
    folder = Path(folder)
    targets = [folder / f"{stem}_z{k:04d}.png" for k in range(data.shape[0])]
    if not overwrite:
        clash = [t for t in targets if t.exists()]
        if clash:
            raise ImageWriteError(clash[0], f"{len(clash)} slice file(s) exist already")
    for k, target in enumerate(targets):
        atomic_write(
            target, lambda tmp, k=k: iio.imwrite(tmp, data[k], extension=".png"), overwrite
        )
    return targets
