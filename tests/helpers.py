"""Test helpers: NIfTI files with chosen affines, synthetic DICOM series, toy training volumes."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from napari_unet.core.training.slices import Volume


def oblique_affine(spacing=(0.9, 1.1, 3.0), angles=(0.25, -0.15, 0.1), origin=(-90, 100, -60)):
    rotation = nib.eulerangles.euler2mat(*angles)
    return nib.affines.from_matvec(rotation @ np.diag(spacing), origin)


AFFINES = {
    "ras": np.diag([1.0, 1.0, 1.0, 1.0]),
    "lps": np.diag([-1.0, -1.0, 1.0, 1.0]),
    "las_aniso": nib.affines.from_matvec(np.diag([-0.8, 1.2, 4.0]), [80, -100, -50]),
    "oblique": oblique_affine(),
    "pil_permuted": nib.affines.from_matvec(
        np.array([[0, 0, -1.5], [-0.7, 0, 0], [0, 2.5, 0]]), [10, 20, 30]
    ),
}


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, sform_code=1, qform_code=1):
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=sform_code)
    image.set_qform(affine, code=qform_code)
    nib.save(image, str(path))
    return path


def write_dicom_series(
    folder: Path,
    volume: np.ndarray,
    spacing=(0.8, 0.9),
    thickness=2.5,
    orientation=(1, 0, 0, 0, 1, 0),
    origin=(-100.0, -120.0, -40.0),
    slope=2.0,
    intercept=-1000.0,
    series_uid="1.2.3.4",
    shuffle=True,
    rng=None,
) -> Path:
    """Write ``volume`` (slices, rows, cols) as stored values; returns the folder.

    Real values are stored * slope + intercept.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    row_cos, col_cos = np.array(orientation[:3], float), np.array(orientation[3:], float)
    normal = np.cross(row_cos, col_cos)
    order = list(range(volume.shape[0]))
    if shuffle:
        (rng or np.random.default_rng(0)).shuffle(order)
    for file_index, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(
            str(folder / f"IM{file_index:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128
        )
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "MR"
        ds.SeriesInstanceUID = series_uid
        ds.StudyInstanceUID = "1.2.3"
        ds.InstanceNumber = file_index + 1
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        position = np.array(origin) + k * thickness * normal
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
        ds.SliceThickness = float(thickness)
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        ds.PixelData = volume[k].astype(np.uint16).tobytes()
        ds.save_as(str(folder / f"IM{file_index:04d}.dcm"), enforce_file_format=True)
    return folder


def toy_volume(seed: int) -> Volume:
    """Noisy bright tissue with dark spherical 'lesions' (learnable in a few dozen steps)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:6, :48, :48]
    image = rng.normal(1.0, 0.1, (6, 48, 48))
    mask = np.zeros((6, 48, 48), np.uint8)
    for _ in range(2):
        cy, cx = rng.integers(12, 36, 2)
        blob = (y - cy) ** 2 + (x - cx) ** 2 < rng.integers(16, 50)
        mask |= blob.astype(np.uint8)
    image[mask > 0] -= 1.5
    return Volume(f"c{seed}", image[None].astype(np.float16), mask, (1.0, 1.0, 1.0))
