"""The synthetic chronic-stroke generator on real templates."""

import numpy as np
import pytest

from napari_unet.core.synth.generator import (
    VALIDATION_SEED_OFFSET,
    make_case,
    validation_seeds,
)
from napari_unet.core.synth.lesions import LesionSampler
from napari_unet.core.synth.templates import available_templates, load_template


def test_both_templates_are_installed_for_tests():
    assert available_templates() == ["mni2009a", "mni2009c_head"]
    head = load_template("mni2009c_head")
    assert head.has_skull and head.t1.shape == (193, 229, 193)
    # with skull: much bright tissue outside the brain mask
    assert (head.t1[~head.brain] > head.white_intensity() * 0.5).sum() > 100_000


@pytest.mark.parametrize("kind", ["territorial", "lacune", "subcortical"])
def test_lesions_lie_in_brain_tissue(kind):
    template = load_template("mni2009a")
    sampler = LesionSampler(template)
    rng = np.random.default_rng(3)
    occupancy, spec = sampler.sample(kind, rng)
    lesion = occupancy > 0.5
    assert lesion.sum() > 0
    assert (template.tissue[lesion] > 0.2).mean() > 0.95
    assert template.brain[lesion].all()
    diameter = 2 * (3 * lesion.sum() / (4 * np.pi)) ** (1 / 3)
    if kind == "lacune":
        assert diameter <= 16
    if kind == "territorial":
        assert spec.volume_ml > 1.0


def test_case_is_reproducible_and_lesion_is_hypointense():
    a = make_case(5, template_name="mni2009c_head")
    b = make_case(5, template_name="mni2009c_head")
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.label.any()
    lesion = a.image[a.label > 0].mean()
    from scipy import ndimage

    ring = ndimage.binary_dilation(a.label > 0, iterations=4) & ~(a.label > 0)
    assert lesion < 0.8 * a.image[ring].mean()  # darker than the tissue around it (CSF-like)


def test_hyperintense_mode_is_brighter():
    case = make_case(5, template_name="mni2009c_head", mode="hyper")
    from scipy import ndimage

    ring = ndimage.binary_dilation(case.label > 0, iterations=4) & ~(case.label > 0)
    assert case.image[case.label > 0].mean() > 1.1 * case.image[ring].mean()


def test_validation_seeds_never_overlap_training(tmp_path):
    seeds = validation_seeds(10)
    assert seeds[0] == VALIDATION_SEED_OFFSET and len(set(seeds)) == 10
    from napari_unet.core.synth.dataset import write_synthetic_dataset

    with pytest.raises(ValueError, match="validation seed range"):
        write_synthetic_dataset(tmp_path / "never", n_train=10, n_val=1, seed=90)
    assert not (tmp_path / "never").exists()


def test_monotonic_remap_keeps_tissue_order():
    from napari_unet.core.synth.augment import monotonic_remap

    ramp = np.linspace(0, 1000, 5001, dtype=np.float32)
    curves = [monotonic_remap(ramp, np.random.default_rng(s)) for s in range(5)]
    for out in curves:
        assert np.all(np.diff(out) >= 0)  # CSF < grey < white survives
        assert out[0] == 0 and abs(out[-1] - ramp[-1]) < 1e-3
    # the curves really change contrast, and differ from one another
    assert min(np.abs(c - ramp).max() for c in curves) > 20
    assert np.abs(curves[0] - curves[1]).max() > 20


def test_wide_acquisition_changes_appearance_not_lesions():
    standard = make_case(5, template_name="mni2009c_head")
    wide = make_case(5, template_name="mni2009c_head", acquisition_profile="wide")
    np.testing.assert_array_equal(standard.label, wide.label)
    assert wide.acquisition["profile"] == "wide" and "profile" not in standard.acquisition
    assert np.abs(standard.image - wide.image).mean() > 0.05 * standard.image.mean()
    from scipy import ndimage

    ring = ndimage.binary_dilation(wide.label > 0, iterations=4) & ~(wide.label > 0)
    assert wide.image[wide.label > 0].mean() < 0.8 * wide.image[ring].mean()
    with pytest.raises(ValueError, match="acquisition profile"):
        make_case(5, acquisition_profile="clinical")


def test_wide_profile_applies_to_training_cases_only(tmp_path):
    import csv

    from napari_unet.core.synth.dataset import write_synthetic_dataset

    root = write_synthetic_dataset(
        tmp_path / "wide", n_train=1, n_val=1, seed=3, workers=1, acquisition="wide"
    )
    with open(root / "cases.csv") as handle:
        rows = {row["case"]: row for row in csv.DictReader(handle)}
    assert rows["synth_0000"]["acquisition"] == "wide"
    assert rows["synthval_0000"]["acquisition"] == "standard"  # the fixed split never changes
    assert (root / "imagesTs" / "synthval_0000_0000.nii.gz").stat().st_size > 100_000


def test_val_start_writes_later_validation_cases_identically(tmp_path):
    from napari_unet.core.synth.dataset import write_synthetic_dataset

    both = write_synthetic_dataset(tmp_path / "both", n_train=0, n_val=2, workers=1)
    later = write_synthetic_dataset(tmp_path / "later", n_train=0, n_val=1, workers=1, val_start=1)
    assert sorted(p.name for p in (later / "imagesTs").iterdir()) == ["synthval_0001_0000.nii.gz"]
    pairs = (("imagesTs", "synthval_0001_0000.nii.gz"), ("labelsTs", "synthval_0001.nii.gz"))
    for sub, name in pairs:
        assert (later / sub / name).read_bytes() == (both / sub / name).read_bytes()
    with pytest.raises(ValueError, match="val_start"):
        write_synthetic_dataset(tmp_path / "bad", n_train=0, n_val=1, val_start=-1)
