"""Finding cases in nnU-Net raw and BIDS-like (ISLES 2022 / ATLAS v2.0) layouts."""

import numpy as np
import pytest

from napari_unet.core.training.datasets import DatasetLayoutError, find_cases

from .helpers import write_nifti


def _pair(image_path, mask_path, rng):
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    write_nifti(image_path, rng.random((8, 8, 4), dtype=np.float32), np.eye(4))
    write_nifti(mask_path, np.zeros((8, 8, 4), np.uint8), np.eye(4))


def test_nnunet_raw_layout(tmp_path, rng):
    for case in ("a", "b"):
        _pair(
            tmp_path / "imagesTr" / f"{case}_0000.nii.gz",
            tmp_path / "labelsTr" / f"{case}.nii.gz",
            rng,
        )
    _pair(tmp_path / "imagesTs" / "v_0000.nii.gz", tmp_path / "labelsTs" / "v.nii.gz", rng)
    write_nifti(tmp_path / "imagesTr" / "a_0001.nii.gz", np.zeros((8, 8, 4), np.float32), np.eye(4))
    cases = {c.case: c for c in find_cases(tmp_path)}
    assert set(cases) == {"a", "b", "v"}
    assert len(cases["a"].images) == 2 and cases["v"].split == "val"


def test_nnunet_missing_label_is_named(tmp_path, rng):
    _pair(tmp_path / "imagesTr" / "a_0000.nii.gz", tmp_path / "labelsTr" / "a.nii.gz", rng)
    write_nifti(tmp_path / "imagesTr" / "b_0000.nii.gz", np.zeros((8, 8, 4), np.float32), np.eye(4))
    with pytest.raises(DatasetLayoutError, match="no label for case 'b'"):
        find_cases(tmp_path)


def test_a_test_set_alone_is_read_as_validation_cases(tmp_path, rng, capsys):
    _pair(tmp_path / "imagesTs" / "v_0000.nii.gz", tmp_path / "labelsTs" / "v.nii.gz", rng)
    (case,) = find_cases(tmp_path)
    assert (case.case, case.split) == ("v", "val")
    (tmp_path / "labelsTs" / "v.nii.gz").unlink()
    with pytest.raises(DatasetLayoutError, match="no label for case 'v'"):
        find_cases(tmp_path)
    empty = tmp_path / "empty"
    (empty / "imagesTs").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="hold no cases with labels"):
        find_cases(empty)
    from napari_unet.cli import main

    assert main(["evaluate-clicks", "--data", str(empty)]) == 2  # a message, not a traceback
    assert "hold no cases with labels" in capsys.readouterr().err


def test_atlas_v2_style_bids(tmp_path, rng):
    """ATLAS v2.0: sub-X/ses-1/anat/*_T1w.nii.gz with masks in derivatives."""
    base = tmp_path / "ATLAS_2" / "Training" / "R001"
    for sub in ("sub-r001s001", "sub-r001s002"):
        _pair(
            base / sub / "ses-1" / "anat" / f"{sub}_ses-1_space-MNI152NLin2009aSym_T1w.nii.gz",
            base
            / "derivatives"
            / "lesions"
            / sub
            / "ses-1"
            / "anat"
            / f"{sub}_ses-1_space-MNI152NLin2009aSym_label-L_desc-T1lesion_mask.nii.gz",
            rng,
        )
    cases = find_cases(base)
    assert [c.case for c in cases] == ["sub-r001s001_ses-1", "sub-r001s002_ses-1"]


def test_isles_2022_style_bids(tmp_path, rng):
    _pair(
        tmp_path
        / "sub-strokecase0001"
        / "ses-0001"
        / "dwi"
        / "sub-strokecase0001_ses-0001_dwi.nii.gz",
        tmp_path
        / "derivatives"
        / "sub-strokecase0001"
        / "ses-0001"
        / "sub-strokecase0001_ses-0001_msk.nii.gz",
        rng,
    )
    cases = find_cases(tmp_path, modality="dwi")
    assert len(cases) == 1 and cases[0].case == "sub-strokecase0001_ses-0001"


def test_unknown_layout_says_what_is_expected(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(DatasetLayoutError, match="nnU-Net raw dataset"):
        find_cases(tmp_path)


def test_click_tuning_tasks_come_from_training_brains_with_lesions(tmp_path, rng):
    from napari_unet.core.click_eval import load_click_tasks

    lesion = np.zeros((16, 16, 4), np.uint8)
    lesion[4:10, 5:11, 1:3] = 1  # 36 px per axial section (display order puts the 4 first)
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (tmp_path / folder).mkdir()
    for case, mask, folder in (("a", lesion, "Tr"), ("b", 0 * lesion, "Tr"), ("v", lesion, "Ts")):
        write_nifti(
            tmp_path / f"images{folder}" / f"{case}_0000.nii.gz",
            rng.random((16, 16, 4), dtype=np.float32),
            np.eye(4),
        )
        write_nifti(tmp_path / f"labels{folder}" / f"{case}.nii.gz", mask, np.eye(4))
    loaded = load_click_tasks(str(tmp_path), "train")
    assert [name for name, *_ in loaded] == ["a"]  # "b" has no lesion, "v" is validation
    name, image, truth, tasks = loaded[0]
    assert image.dtype == np.float32 and image.shape == truth.shape
    assert int(truth.sum()) == 72 and len(tasks) == 1  # 2 sections: only the largest
    assert int(truth[tasks[0].index].sum()) == 36
    assert [n for n, *_ in load_click_tasks(str(tmp_path), "val")] == ["v"]
    assert load_click_tasks(str(tmp_path), "train", cases=0) == []


def test_several_datasets_combine_with_distinct_names(tmp_path, rng):
    from napari_unet.core.training.datasets import find_cases_in

    for root, names in (("standard", ("a", "b")), ("wide", ("a", "c"))):
        for case in names:
            _pair(
                tmp_path / root / "imagesTr" / f"{case}_0000.nii.gz",
                tmp_path / root / "labelsTr" / f"{case}.nii.gz",
                rng,
            )
    _pair(
        tmp_path / "standard" / "imagesTs" / "v_0000.nii.gz",
        tmp_path / "standard" / "labelsTs" / "v.nii.gz",
        rng,
    )
    cases = {c.case: c for c in find_cases_in([tmp_path / "standard", tmp_path / "wide"])}
    assert set(cases) == {"standard_a", "b", "wide_a", "c", "v"}
    assert cases["wide_a"].images[0] == tmp_path / "wide" / "imagesTr" / "a_0000.nii.gz"
    assert [c.split for c in cases.values()].count("val") == 1
    write_nifti(
        tmp_path / "wide" / "imagesTr" / "c_0001.nii.gz", np.zeros((8, 8, 4), np.float32), np.eye(4)
    )
    with pytest.raises(DatasetLayoutError, match="differ in image channels"):
        find_cases_in([tmp_path / "standard", tmp_path / "wide"])
