"""I/O keeps geometry: orientations round-trip, DICOM sorts and rescales, bad files fail clearly."""

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from napari_unet.core.io import (
    GeometryMismatchError,
    ImageReadError,
    ImageWriteError,
    can_read,
    read_channels,
    read_image,
    write_labels_nifti,
    write_png_slices,
    write_probability_nifti,
    write_tiff_stack,
)
from napari_unet.core.io.geometry import ImageGeometry

from .helpers import AFFINES, write_dicom_series, write_nifti


@pytest.fixture
def volume(rng):
    return rng.normal(100, 20, size=(20, 24, 12)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_display_is_axial_anterior_up_radiological(tmp_path, volume, name):
    path = write_nifti(tmp_path / f"{name}.nii.gz", volume, AFFINES[name])
    image = read_image(path)
    assert nib.aff2axcodes(image.geometry.display_affine) == ("S", "P", "L")
    spacing = np.sqrt((AFFINES[name][:3, :3] ** 2).sum(0))
    assert sorted(image.geometry.display_spacing) == pytest.approx(sorted(spacing))
    assert image.data.shape == image.geometry.display_shape
    # the voxel at display (0, 0, 0) is the most inferior, anterior, right one
    world = image.geometry.display_affine @ np.array([0, 0, 0, 1])
    world_next = image.geometry.display_affine @ np.array([1, 1, 1, 1])
    assert world_next[2] > world[2] - 1e-6  # slider goes up (superior)


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_mask_round_trip_in_source_grid(tmp_path, volume, name):
    """A mask painted on the reoriented display comes back in the file's voxel order."""
    affine = AFFINES[name]
    src = write_nifti(tmp_path / f"{name}.nii.gz", volume, affine, sform_code=2, qform_code=1)
    image = read_image(src)
    truth_original = np.zeros(volume.shape, dtype=np.uint8)
    truth_original[3:7, 5:9, 2:4] = 1
    truth_original[15, 20, 10] = 1
    painted = image.geometry.to_display(truth_original)  # what the user sees and paints
    out = write_labels_nifti(painted, image.geometry, tmp_path / f"{name}_lesion.nii.gz")
    written = nib.load(out)
    source = nib.load(src)
    assert written.shape == source.shape
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(written.dataobj), truth_original)
    np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    np.testing.assert_allclose(written.get_sform(), source.get_sform(), atol=1e-5)
    np.testing.assert_allclose(written.get_qform(), source.get_qform(), atol=1e-4)
    assert int(written.header["sform_code"]) == 2 and int(written.header["qform_code"]) == 1
    # an independent reader (ITK) agrees on voxels and physical placement
    itk = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(itk).transpose(2, 1, 0), truth_original)
    index = (15, 20, 10)
    lps = np.array(itk.TransformIndexToPhysicalPoint(index))
    ras = source.affine @ np.array([*index, 1])
    np.testing.assert_allclose(lps * [-1, -1, 1], ras[:3], atol=1e-3)


def test_uint16_when_labels_exceed_255(tmp_path, volume):
    image = read_image(write_nifti(tmp_path / "a.nii.gz", volume, AFFINES["ras"]))
    labels = np.zeros(image.data.shape, dtype=np.int32)
    labels[0, 0, 0] = 300
    out = write_labels_nifti(labels, image.geometry, tmp_path / "big.nii.gz")
    assert nib.load(out).get_data_dtype() == np.uint16


def test_probability_map_is_float32(tmp_path, volume):
    image = read_image(write_nifti(tmp_path / "a.nii.gz", volume, AFFINES["oblique"]))
    prob = np.linspace(0, 1, image.data.size, dtype=np.float32).reshape(image.data.shape)
    out = write_probability_nifti(prob, image.geometry, tmp_path / "p.nii.gz")
    loaded = nib.load(out)
    assert loaded.get_data_dtype() == np.float32
    np.testing.assert_allclose(loaded.get_fdata(), image.geometry.to_original(prob), atol=1e-7)


def test_never_overwrites_and_atomic(tmp_path, volume):
    image = read_image(write_nifti(tmp_path / "a.nii.gz", volume, AFFINES["ras"]))
    target = tmp_path / "m.nii.gz"
    write_labels_nifti(np.zeros(image.data.shape, np.uint8), image.geometry, target)
    before = target.read_bytes()
    with pytest.raises(ImageWriteError, match="exists"):
        write_labels_nifti(np.ones(image.data.shape, np.uint8), image.geometry, target)
    assert target.read_bytes() == before
    write_labels_nifti(np.ones(image.data.shape, np.uint8), image.geometry, target, overwrite=True)
    assert nib.load(target).get_fdata().min() == 1
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_read_only_folder_gives_clear_error(tmp_path, volume, monkeypatch):
    """Root ignores permission bits, so the read-only folder is simulated at the OS call."""
    import tempfile

    image = read_image(write_nifti(tmp_path / "a.nii.gz", volume, AFFINES["ras"]))

    def read_only(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ImageWriteError, match=r"m.nii.gz: cannot write here \(Permission denied"):
        write_labels_nifti(
            np.zeros(image.data.shape, np.uint8), image.geometry, tmp_path / "m.nii.gz"
        )
    assert not (tmp_path / "m.nii.gz").exists()


def test_interrupted_write_keeps_old_file(tmp_path, volume, monkeypatch):
    image = read_image(write_nifti(tmp_path / "a.nii.gz", volume, AFFINES["ras"]))
    target = tmp_path / "m.nii.gz"
    write_labels_nifti(np.zeros(image.data.shape, np.uint8), image.geometry, target)
    before = target.read_bytes()

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib, "save", full_disk)
    with pytest.raises(ImageWriteError, match="No space left"):
        write_labels_nifti(
            np.ones(image.data.shape, np.uint8), image.geometry, target, overwrite=True
        )
    assert target.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_geometry_metadata_round_trip(tmp_path, volume):
    image = read_image(write_nifti(tmp_path / "a.nii.gz", volume, AFFINES["oblique"]))
    restored = ImageGeometry.from_metadata(image.geometry.to_metadata())
    np.testing.assert_array_equal(restored.affine, image.geometry.affine)
    np.testing.assert_array_equal(restored.to_original(image.data), volume)
    assert restored.header == image.geometry.header


# -- 2D, 4D and multi-channel ----------------------------------------------------------------
def test_2d_nifti_single_slice_round_trip(tmp_path, rng):
    data = rng.normal(size=(30, 40)).astype(np.float32)
    path = write_nifti(tmp_path / "slice.nii", data, np.diag([0.5, 0.5, 1, 1]))
    image = read_image(path)
    assert image.data.shape == (1, 40, 30)
    mask = (image.data > 0).astype(np.uint8)
    out = write_labels_nifti(mask, image.geometry, tmp_path / "slice_lesion.nii.gz")
    assert nib.load(out).shape == (30, 40)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), (data > 0).astype(np.uint8))


def test_4d_choose_volume_or_channels(tmp_path, rng):
    data = rng.normal(size=(10, 12, 8, 3)).astype(np.float32)
    path = write_nifti(tmp_path / "dwi.nii.gz", data, AFFINES["lps"])
    with pytest.raises(ImageReadError, match=r"3 volumes.*--volume"):
        read_image(path)
    one = read_image(path, volume=2)
    assert one.data.shape == (8, 12, 10)
    np.testing.assert_array_equal(one.geometry.to_original(one.data), data[..., 2])
    channels = read_image(path, all_volumes=True)
    assert channels.data.shape == (3, 8, 12, 10)
    with pytest.raises(ImageReadError, match="volume 5 does not exist"):
        read_image(path, volume=5)


def test_co_registered_channels_and_mismatch(tmp_path, rng):
    dwi = write_nifti(
        tmp_path / "dwi.nii.gz", rng.random((10, 12, 8), dtype=np.float32), AFFINES["ras"]
    )
    adc = write_nifti(
        tmp_path / "adc.nii.gz", rng.random((10, 12, 8), dtype=np.float32), AFFINES["ras"]
    )
    both = read_channels([dwi, adc])
    assert both.data.shape == (2, 8, 12, 10) and both.channel_names == ["dwi", "adc"]
    moved = write_nifti(
        tmp_path / "moved.nii.gz",
        rng.random((10, 12, 8), dtype=np.float32),
        nib.affines.from_matvec(np.eye(3), [5, 0, 0]),
    )
    with pytest.raises(GeometryMismatchError, match="moved.nii.gz: its affine differs"):
        read_channels([dwi, moved])
    small = write_nifti(
        tmp_path / "small.nii.gz", rng.random((9, 12, 8), dtype=np.float32), AFFINES["ras"]
    )
    with pytest.raises(GeometryMismatchError, match="small.nii.gz: shape"):
        read_channels([dwi, small])


def test_png_tiff_and_stacks(tmp_path, rng):
    import imageio.v3 as iio
    import tifffile

    grey = (rng.random((20, 30)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "s.png", grey)
    image = read_image(tmp_path / "s.png")
    assert image.data.shape == (1, 20, 30)
    np.testing.assert_array_equal(image.data[0], grey)
    rgb = np.stack([grey] * 3, -1)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    colour = read_image(tmp_path / "rgb.png")
    assert colour.data.shape == (1, 20, 30) and colour.warnings
    stack = (rng.random((5, 20, 30)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    loaded = read_image(tmp_path / "stack.tif")
    np.testing.assert_array_equal(loaded.data, stack)
    out = write_tiff_stack(loaded.data > 500, tmp_path / "stack_lesion.tif")
    np.testing.assert_array_equal(tifffile.imread(out), (stack > 500).astype(np.uint8))
    pngs = write_png_slices(loaded.data > 500, tmp_path / "pngs", "stack")
    assert len(pngs) == 5
    np.testing.assert_array_equal(iio.imread(pngs[2]), (stack[2] > 500).astype(np.uint8))


# -- DICOM -----------------------------------------------------------------------------------
def test_dicom_series_sorted_rescaled_and_placed(tmp_path, rng):
    stored = rng.integers(0, 2000, size=(6, 16, 20)).astype(np.uint16)  # (slices, rows, cols)
    folder = write_dicom_series(tmp_path / "series", stored, slope=2.0, intercept=-1000.0)
    image = read_image(folder)
    real = stored.astype(np.float32) * 2.0 - 1000.0
    original = image.geometry.to_original(image.data)  # (cols, rows, slices)
    np.testing.assert_allclose(original, real.transpose(2, 1, 0))
    affine = image.geometry.affine
    # voxel (col=3, row=5, slice=4) lies at IPP + 3*dc*row_cos + 5*dr*col_cos + 4*ds*normal (LPS)
    lps = np.array([-100.0, -120.0, -40.0]) + np.array([3 * 0.9, 5 * 0.8, 4 * 2.5])
    np.testing.assert_allclose((affine @ [3, 5, 4, 1])[:3], lps * [-1, -1, 1], atol=1e-4)
    assert image.geometry.display_spacing == pytest.approx((2.5, 0.8, 0.9))
    assert can_read(folder)


def test_dicom_oblique_matches_itk(tmp_path, rng):
    c, s = np.cos(0.3), np.sin(0.3)
    orientation = (c, s, 0.0, 0.0, 0.0, -1.0)  # oblique coronal
    stored = rng.integers(0, 500, size=(5, 12, 14)).astype(np.uint16)
    folder = write_dicom_series(
        tmp_path / "obl", stored, orientation=orientation, slope=1.0, intercept=0.0
    )
    image = read_image(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    itk = reader.Execute()
    for index in [(0, 0, 0), (13, 11, 4), (5, 3, 2)]:
        lps = np.array(itk.TransformIndexToPhysicalPoint(index))
        ras = image.geometry.affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-3)


def test_dicom_mixed_series_rejected(tmp_path, rng):
    stored = rng.integers(0, 100, size=(3, 8, 8)).astype(np.uint16)
    folder = write_dicom_series(tmp_path / "mixed", stored, series_uid="1.1")
    write_dicom_series(tmp_path / "other", stored, series_uid="2.2")
    for i, f in enumerate(sorted((tmp_path / "other").iterdir())):
        f.rename(folder / f"B{i}.dcm")
    with pytest.raises(ImageReadError, match="mixes 2 series"):
        read_image(folder)


def test_dicom_mixed_orientation_and_size_rejected(tmp_path, rng):
    stored = rng.integers(0, 100, size=(3, 8, 8)).astype(np.uint16)
    folder = write_dicom_series(tmp_path / "a", stored)
    write_dicom_series(tmp_path / "b", stored, orientation=(0, 1, 0, 0, 0, -1), origin=(0, 0, 500))
    for i, f in enumerate(sorted((tmp_path / "b").iterdir())):
        f.rename(folder / f"B{i}.dcm")
    with pytest.raises(ImageReadError, match="different orientations"):
        read_image(folder)
    for f in sorted(folder.glob("B*")):
        f.unlink()
    write_dicom_series(
        tmp_path / "c", rng.integers(0, 9, size=(2, 10, 8)).astype(np.uint16), origin=(0, 0, 900)
    )
    for i, f in enumerate(sorted((tmp_path / "c").iterdir())):
        f.rename(folder / f"C{i}.dcm")
    with pytest.raises(ImageReadError, match="different sizes"):
        read_image(folder)


# -- bad input -------------------------------------------------------------------------------
def test_reader_returns_none_for_foreign_files(tmp_path):
    from napari_unet._napari.reader import get_reader

    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty_dir").mkdir()
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "empty_dir")) is None
    assert get_reader(str(tmp_path / "x.nii.gz")) is not None


def test_zero_size_file(tmp_path):
    (tmp_path / "zero.nii.gz").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"zero.nii.gz: the file is empty"):
        read_image(tmp_path / "zero.nii.gz")


def test_not_nifti_named_nii(tmp_path):
    (tmp_path / "fake.nii").write_text("this is not an image " * 40)
    with pytest.raises(ImageReadError, match=r"fake.nii: .*NIfTI"):
        read_image(tmp_path / "fake.nii")


def test_truncated_gzip(tmp_path, volume):
    path = write_nifti(tmp_path / "t.nii.gz", volume, AFFINES["ras"])
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ImageReadError, match=r"t.nii.gz: .*(truncated|corrupt|readable)"):
        read_image(path)


def test_header_dimensions_disagree_with_data(tmp_path, volume):
    path = write_nifti(tmp_path / "short.nii", volume, AFFINES["ras"])
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(ImageReadError, match=r"short.nii: the header declares .* bytes"):
        read_image(path)


def test_absurd_dimensions_refused_before_allocating(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((16000, 16000, 16000))
    header.set_data_dtype(np.float32)
    path = tmp_path / "huge.nii.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(header.binaryblock + b"\0" * 4)
    with pytest.raises(ImageReadError, match=r"huge.nii.gz: .*refusing to allocate"):
        read_image(path)


def test_nan_and_inf_voxels_warn_and_are_replaced(tmp_path, volume, caplog):
    volume[0, 0, 0] = np.nan
    volume[1, 1, 1] = np.inf
    path = write_nifti(tmp_path / "nan.nii.gz", volume, AFFINES["ras"])
    with caplog.at_level("WARNING"):
        image = read_image(path)
    assert np.isfinite(image.data).all()
    assert any("2 NaN/Inf voxels" in w for w in image.warnings)
    assert "nan.nii.gz" in caplog.text


def test_unsupported_suffix(tmp_path):
    (tmp_path / "scan.mha").write_bytes(b"x")
    with pytest.raises(ImageReadError, match="unsupported file type"):
        read_image(tmp_path / "scan.mha")


def test_written_files_get_normal_permissions(tmp_path, volume):
    image = read_image(write_nifti(tmp_path / "a.nii.gz", volume, AFFINES["ras"]))
    old = os.umask(0o022)
    try:
        out = write_labels_nifti(
            np.zeros(image.data.shape, np.uint8), image.geometry, tmp_path / "m.nii.gz"
        )
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644
