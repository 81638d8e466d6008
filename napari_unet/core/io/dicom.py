"""DICOM series reading (pydicom): sort, rescale, and build the RAS affine.

DICOM positions are in LPS millimetres; NIfTI and this package use RAS, so the
first two world axes are negated. Voxel order in the file grid is
(column, row, slice), as NIfTI converters such as dcm2niix produce.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .errors import ImageReadError
from .geometry import ImageGeometry
from .image import LoadedImage, check_size

log = logging.getLogger(__name__)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def looks_like_dicom_folder(path: str | Path) -> bool:
    """True for a folder holding at least one file with the DICOM preamble."""
    path = Path(path)
    if not path.is_dir():
        return False
    return any(child.is_file() and _has_dicom_magic(child) for child in sorted(path.iterdir())[:50])


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom_series(folder: str | Path) -> LoadedImage:
    """Read one DICOM series from a folder; mixed series are refused with the reason."""
    import pydicom

    folder = Path(folder)
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and _has_dicom_magic(p)]
    if not files:
        raise ImageReadError(folder, "no DICOM files (with the DICM preamble) in this folder")
    headers = []
    for file in files:
        try:
            headers.append((file, pydicom.dcmread(str(file), stop_before_pixels=True)))
        except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds
            raise ImageReadError(file, f"not a readable DICOM file ({exc})") from exc
    _check_single_series(folder, headers)
    first = headers[0][1]
    try:
        orientation = np.array(first.ImageOrientationPatient, dtype=np.float64)
        row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    except AttributeError as exc:
        raise ImageReadError(folder, f"a slice lacks geometry tags ({exc})") from exc
    row_cos, col_cos = orientation[:3], orientation[3:]
    normal = np.cross(row_cos, col_cos)
    positions = []
    for file, header in headers:
        if "ImagePositionPatient" not in header:
            raise ImageReadError(file, "the slice has no ImagePositionPatient")
        positions.append(np.array(header.ImagePositionPatient, dtype=np.float64))
    distances = np.array([p @ normal for p in positions])
    order = np.argsort(distances, kind="stable")
    if len(np.unique(np.round(distances, 4))) != len(distances):
        raise ImageReadError(
            folder,
            "two slices share one position: is this a multi-echo or "
            "multi-phase series? Split it into one folder per volume.",
        )
    gaps = np.diff(distances[order])
    slice_spacing = (
        float(np.median(gaps)) if gaps.size else float(getattr(first, "SliceThickness", 1.0) or 1.0)
    )
    if gaps.size and np.ptp(gaps) > 0.01 * abs(slice_spacing) + 1e-3:
        log.warning(
            "%s: uneven slice gaps (%.3f..%.3f mm); using the median",
            folder,
            gaps.min(),
            gaps.max(),
        )
    rows, cols = int(first.Rows), int(first.Columns)
    check_size(folder, (cols, rows, len(files)), 4)
    volume = np.empty((cols, rows, len(files)), dtype=np.float32)
    for k, index in enumerate(order):
        file = headers[index][0]
        try:
            ds = pydicom.dcmread(str(file))
            pixels = ds.pixel_array.astype(np.float32)
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(file, f"cannot decode the pixel data ({exc})") from exc
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        volume[:, :, k] = (pixels * slope + intercept).T
    origin = positions[order[0]]
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = row_cos * col_spacing
    affine_lps[:3, 1] = col_cos * row_spacing
    affine_lps[:3, 2] = normal * slice_spacing
    affine_lps[:3, 3] = origin
    affine = LPS_TO_RAS @ affine_lps
    geometry = ImageGeometry.from_affine(affine, volume.shape, source_format="dicom")
    return LoadedImage(geometry.to_display(volume), geometry, folder)


def _check_single_series(folder: Path, headers) -> None:
    def distinct(tag: str, convert=lambda v: v):
        values = {}
        for file, header in headers:
            value = getattr(header, tag, None)
            key = None if value is None else convert(value)
            values.setdefault(key, file)
        return values

    series = distinct("SeriesInstanceUID", str)
    if len(series) > 1:
        raise ImageReadError(
            folder,
            f"the folder mixes {len(series)} series (SeriesInstanceUID "
            f"{', '.join(str(s) for s in list(series)[:3])}); put each series in its own folder",
        )
    orientations = distinct(
        "ImageOrientationPatient", lambda v: tuple(np.round(np.array(v, dtype=float), 4))
    )
    if len(orientations) > 1:
        files = [p.name for p in orientations.values()]
        raise ImageReadError(
            folder,
            f"slices have different orientations (e.g. {files[:2]}); "
            "a series must share one ImageOrientationPatient",
        )
    sizes = distinct("Rows", int), distinct("Columns", int)
    if len(sizes[0]) > 1 or len(sizes[1]) > 1:
        raise ImageReadError(folder, "slices have different sizes (Rows/Columns differ)")
