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
