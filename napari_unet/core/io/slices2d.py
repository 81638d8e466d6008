"""2D PNG/TIFF slices and TIFF stacks, for users without NIfTI or DICOM."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import ImageReadError
from .geometry import ImageGeometry
from .image import LoadedImage, check_size, sanitize

log = logging.getLogger(__name__)
SUFFIXES_2D = (".png", ".tif", ".tiff")


def is_2d_path(path: str | Path) -> bool:
    return str(path).lower().endswith(SUFFIXES_2D)


def read_slices(path: str | Path) -> LoadedImage:
    """Read a PNG, a TIFF image or a TIFF stack as a (Z, Y, X) volume with unit spacing.

    Colour images are converted to grey (ITU-R 601 luma) with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "the file is empty (0 bytes)")
    warnings: list[str] = []
    try:
        if path.suffix.lower() == ".png":
            import imageio.v3 as iio

            data = np.asarray(iio.imread(path))
        else:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                check_size(path, series.shape, np.dtype(series.dtype).itemsize)
                data = series.asarray()
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - imaging libraries raise many kinds
        raise ImageReadError(path, f"not a readable {path.suffix} image ({exc})") from exc
    if data.ndim == 3 and data.shape[-1] in (3, 4) and path.suffix.lower() == ".png":
        data = _to_grey(data[..., :3])
        warnings.append(f"{path}: colour image converted to grey")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ImageReadError(path, f"expected a 2D image or a 3D stack, got shape {data.shape}")
    data = sanitize(data.astype(np.float32, copy=False), path, warnings)
    for message in warnings:
        log.warning(message)
    geometry = ImageGeometry.identity(data.shape, source_format="2d")
    return LoadedImage(data, geometry, path, warnings=warnings)


def _to_grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
