"""The napari-unet command: help on every subcommand, predict keeps geometry, failures counted."""

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_unet import __version__
from napari_unet.cli import build_parser, main
from napari_unet.core.checkpoint import save_checkpoint

from .helpers import write_nifti

SUBCOMMANDS = [
    "predict",
    "synth",
    "train",
    "evaluate",
    "evaluate-clicks",
    "info",
    "sizes",
    "benchmark",
    "demo",
]


def test_version_from_console_script():
    result = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == f"napari-unet {__version__}"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help_on_every_subcommand(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: napari-unet {command}" in capsys.readouterr().out


def test_parser_knows_all_subcommands():
    actions = [a for a in build_parser()._actions if a.dest == "command"]
    assert set(SUBCOMMANDS) <= set(actions[0].choices)


def test_info_paper_prints_every_stage(capsys):
    assert main(["info", "--paper"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 31,030,658" in out
    assert "bottleneck.conv2" in out and "28 x 28    x 1024" in out
    assert "head" in out and "388 x 388   x 2" in out


def test_sizes_lists_572(capsys):
    assert main(["sizes", "--min", "560", "--max", "580"]) == 0
    assert "   572    388" in capsys.readouterr().out


@pytest.fixture
def tiny_model(tiny_bundle, tmp_path):
    return save_checkpoint(tiny_bundle, tmp_path / "model" / "tiny.safetensors")


def test_predict_flipped_anisotropic_volume_lines_up(tmp_path, tiny_model, rng, capsys):
    """The written mask has the input's exact shape/affine, and voxel (i,j,k) is voxel (i,j,k)."""
    affine = nib.affines.from_matvec(np.diag([-0.7, 1.3, -3.5]), [50, -80, 40])
    data = rng.normal(100, 10, size=(40, 30, 9)).astype(np.float32)
    data[10:20, 5:15, 2:6] += 300  # a bright block
    source = write_nifti(tmp_path / "flipped.nii.gz", data, affine)
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(source),
            "--output",
            str(out),
            "--model",
            str(tiny_model),
            "--probabilities",
            "--threshold",
            "0.5",
        ]
    )
    assert code == 0
    mask_img = nib.load(out / "flipped_lesion.nii.gz")
    prob_img = nib.load(out / "flipped_prob.nii.gz")
    assert mask_img.shape == data.shape and prob_img.shape == data.shape
    np.testing.assert_allclose(mask_img.affine, affine, atol=1e-5)
    assert mask_img.get_data_dtype() == np.uint8
    mask = np.asarray(mask_img.dataobj)
    prob = prob_img.get_fdata()
    np.testing.assert_array_equal(mask, (prob >= 0.5).astype(np.uint8))
    # voxel-for-voxel: the probability map follows the bright block in the file's own order
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.models import get_model

    image = read_image(source)
    expected = Predictor(get_model(tiny_model)).predict_volume(image.data, axis=0)
    np.testing.assert_allclose(prob, image.geometry.to_original(expected), atol=1e-5)
    assert "flipped.nii.gz" in capsys.readouterr().out


def test_predict_mirror_writes_the_mirror_averaged_probabilities(tmp_path, tiny_model, rng):
    """``--mirror`` reaches the pipeline: the written map is the mirror-averaged one, in the
    file's own voxel order, and differs from the plain map."""
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.models import get_model

    affine = nib.affines.from_matvec(np.diag([-1.0, 1.0, 2.0]), [10, -20, 5])
    source = write_nifti(
        tmp_path / "m.nii.gz", rng.normal(100, 20, size=(24, 20, 5)).astype(np.float32), affine
    )
    base = ["predict", str(source), "--model", str(tiny_model), "--probabilities"]
    assert main([*base, "--output", str(tmp_path / "plain")]) == 0
    assert main([*base, "--output", str(tmp_path / "tta"), "--mirror"]) == 0
    plain = nib.load(tmp_path / "plain" / "m_prob.nii.gz").get_fdata()
    tta = nib.load(tmp_path / "tta" / "m_prob.nii.gz").get_fdata()
    image = read_image(source)
    predictor = Predictor(get_model(tiny_model))
    expected = predictor.predict_volume(image.data, axis=0, mirror=True)
    np.testing.assert_allclose(tta, image.geometry.to_original(expected), atol=1e-5)
    assert np.abs(tta - plain).max() > 1e-4


def test_predict_resamples_to_the_model_spacing_unless_told_not_to(tmp_path, tiny_bundle, rng):
    """A model trained at 1 mm sees a 0.5 mm scan at 1 mm; ``--native-grid`` turns that
    off. Either way the answer is written on the scan's own grid."""
    import dataclasses

    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image

    bundle = dataclasses.replace(tiny_bundle, input_spacing_mm=1.0)
    model = save_checkpoint(bundle, tmp_path / "model" / "one_mm.safetensors")
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    data = rng.normal(100, 20, size=(48, 40, 4)).astype(np.float32)
    source = write_nifti(tmp_path / "s.nii.gz", data, affine)
    base = ["predict", str(source), "--model", str(model), "--probabilities"]
    assert main([*base, "--output", str(tmp_path / "resampled")]) == 0
    assert main([*base, "--output", str(tmp_path / "native"), "--native-grid"]) == 0
    resampled = nib.load(tmp_path / "resampled" / "s_prob.nii.gz")
    native = nib.load(tmp_path / "native" / "s_prob.nii.gz")
    assert resampled.shape == native.shape == data.shape
    np.testing.assert_allclose(resampled.affine, affine)
    image = read_image(source)
    for name, resample in (("resampled", True), ("native", False)):
        expected = Predictor(bundle, resample=resample).predict_volume(
            image.data, spacing=image.geometry.display_spacing
        )
        written = nib.load(tmp_path / name / "s_prob.nii.gz").get_fdata()
        np.testing.assert_allclose(written, image.geometry.to_original(expected), atol=1e-5)
    assert np.abs(resampled.get_fdata() - native.get_fdata()).max() > 1e-3


def test_predict_continues_after_a_bad_input(tmp_path, tiny_model, rng, capsys):
    good = write_nifti(
        tmp_path / "good.nii", rng.normal(size=(20, 20, 4)).astype(np.float32), np.eye(4)
    )
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"")
    code = main(
        [
            "predict",
            str(bad),
            str(good),
            "--output",
            str(tmp_path / "o"),
            "--model",
            str(tiny_model),
        ]
    )
    assert code == 1
    assert (tmp_path / "o" / "good_lesion.nii.gz").exists()
    err = capsys.readouterr().err
    assert "bad.nii.gz: the file is empty" in err and "1 of 2 input(s) failed" in err


def test_predict_refuses_to_overwrite(tmp_path, tiny_model, rng, capsys):
    source = write_nifti(
        tmp_path / "a.nii.gz", rng.normal(size=(16, 16, 3)).astype(np.float32), np.eye(4)
    )
    args = ["predict", str(source), "--output", str(tmp_path / "o"), "--model", str(tiny_model)]
    assert main(args) == 0
    assert main(args) == 1
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_predict_dicom_folder(tmp_path, tiny_model, rng):
    from .helpers import write_dicom_series

    folder = write_dicom_series(
        tmp_path / "T1_series", rng.integers(0, 900, size=(4, 20, 24)).astype(np.uint16)
    )
    assert (
        main(["predict", str(folder), "--output", str(tmp_path / "o"), "--model", str(tiny_model)])
        == 0
    )
    written = nib.load(tmp_path / "o" / "T1_series_lesion.nii.gz")
    assert written.shape == (24, 20, 4)


def test_bad_model_is_a_clear_error(tmp_path, rng, capsys):
    source = write_nifti(
        tmp_path / "a.nii.gz", rng.normal(size=(8, 8, 2)).astype(np.float32), np.eye(4)
    )
    assert (
        main(
            [
                "predict",
                str(source),
                "--output",
                str(tmp_path),
                "--model",
                str(tmp_path / "nope.safetensors"),
            ]
        )
        == 2
    )
    assert "nope.safetensors: no such checkpoint" in capsys.readouterr().err


def test_evaluate_refuses_mismatched_grids_and_scores_empty_as_one(tmp_path, capsys):
    empty = np.zeros((10, 10, 4), np.uint8)
    write_nifti(tmp_path / "p.nii.gz", empty, np.eye(4))
    write_nifti(tmp_path / "t.nii.gz", empty, np.eye(4))
    json_path = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "p.nii.gz"),
                "--truth",
                str(tmp_path / "t.nii.gz"),
                "--json",
                str(json_path),
            ]
        )
        == 0
    )
    import json

    assert json.loads(json_path.read_text())["summary"]["mean_dice"] == 1.0
    write_nifti(tmp_path / "s.nii.gz", empty, np.diag([2.0, 1, 1, 1]))
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "s.nii.gz"),
                "--truth",
                str(tmp_path / "t.nii.gz"),
            ]
        )
        == 2
    )
    assert "affine differs" in capsys.readouterr().err


def test_main_job_runs_headless_without_a_display(tmp_path):
    """`python -m napari_unet` with no display runs the pipeline and says where it wrote."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, "-m", "napari_unet", "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    )
    assert result.stdout.startswith("No display: running the segmentation pipeline headless.")
    written = sorted(tmp_path.rglob("*.nii.gz"))
    assert [p.name for p in written] == ["sample_t1_lesion.nii.gz", "sample_t1_prob.nii.gz"]
    assert str(written[0]) in result.stdout
    assert (
        nib.load(written[0]).shape
        == nib.load(Path(__file__).parents[1] / "napari_unet" / "data" / "sample_t1.nii.gz").shape
    )


def test_train_refuses_widths_that_do_not_fit_the_depth(tmp_path, capsys):
    for folder in ("imagesTr", "labelsTr"):
        (tmp_path / folder).mkdir()
    image, mask = np.ones((16, 16, 4), np.float32), np.zeros((16, 16, 4), np.uint8)
    write_nifti(tmp_path / "imagesTr" / "a_0000.nii.gz", image, np.eye(4))
    write_nifti(tmp_path / "labelsTr" / "a.nii.gz", mask, np.eye(4))
    args = ["train", "--data", str(tmp_path), "--output", str(tmp_path / "run"), "--steps", "1"]
    assert main(args) == 2  # one case: nothing left to train on once one is held out
    assert "needs at least 2 cases" in capsys.readouterr().err
    write_nifti(tmp_path / "imagesTr" / "b_0000.nii.gz", image, np.eye(4))
    write_nifti(tmp_path / "labelsTr" / "b.nii.gz", mask, np.eye(4))
    assert main([*args, "--widths", "16,24"]) == 2
    assert "level_widths needs depth + 1 = 5 entries, got 2" in capsys.readouterr().err
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_train_on_several_datasets_checks_them_first(tmp_path, capsys):
    image, mask = np.ones((16, 16, 4), np.float32), np.zeros((16, 16, 4), np.uint8)
    for root, channels in (("one", 1), ("two", 2)):
        for folder in ("imagesTr", "labelsTr"):
            (tmp_path / root / folder).mkdir(parents=True)
        for c in range(channels):
            write_nifti(tmp_path / root / "imagesTr" / f"a_{c:04d}.nii.gz", image, np.eye(4))
        write_nifti(tmp_path / root / "labelsTr" / "a.nii.gz", mask, np.eye(4))
    args = ["train", "--data", str(tmp_path / "one"), "--data", str(tmp_path / "two")]
    assert main([*args, "--output", str(tmp_path / "run"), "--steps", "1"]) == 2
    assert "differ in image channels" in capsys.readouterr().err
    assert not (tmp_path / "run" / "best.safetensors").exists()


def test_train_without_data_generates_standard_synthetic_cases(tmp_path, monkeypatch):
    import napari_unet.core.synth.dataset as dataset

    seen = {}

    def fake_writer(root, n_train, n_val, **kwargs):
        seen.update(kwargs, n_train=n_train, n_val=n_val)
        raise RuntimeError("stop after the call")

    monkeypatch.setattr(dataset, "write_synthetic_dataset", fake_writer)
    with pytest.raises(RuntimeError, match="stop after the call"):
        main(["train", "--output", str(tmp_path / "run"), "--synthetic", "3", "--val", "1"])
    assert seen["acquisition"] == "standard" and seen["n_train"] == 3 and seen["n_val"] == 1
