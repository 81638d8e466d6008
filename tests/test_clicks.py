"""The click engine on synthetic lesions and on the bundled model."""

import numpy as np
import pytest

from napari_unet.core.clicks import (
    Click,
    ClickEngine,
    ClickOutsideImage,
    component_at,
    grow_from_click,
)
from napari_unet.core.inference import Predictor
from napari_unet.core.io import read_image
from napari_unet.core.metrics import dice
from napari_unet.core.models import get_model
from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1


def test_component_under_click_and_local_threshold():
    prob = np.zeros((40, 40), np.float32)
    prob[10:20, 10:20] = 0.9  # a confident lesion
    prob[25:30, 25:30] = 0.35  # a faint one, below the 0.5 threshold
    region, used = grow_from_click(prob, 15, 15, 0.5)
    assert region.sum() == 100 and used == 0.5
    region, used = grow_from_click(prob, 27, 27, 0.5)  # "just outside": threshold lowered
    assert region.sum() == 25 and used == pytest.approx(0.315)
    region, _ = grow_from_click(prob, 2, 2, 0.5)  # no support: a small disc at the click
    assert region[2, 2] and region.sum() <= 13
    assert not component_at(prob > 0.5, 0, 0).any()


@pytest.fixture(scope="module")
def sample():
    image = read_image(SAMPLE_T1).data
    truth = read_image(SAMPLE_LESION).data > 0.5
    return image, truth


def test_positive_then_negative_clicks_on_the_sample(sample):
    image, truth = sample
    predictor = Predictor(get_model(None))
    engine = ClickEngine(predictor, image)
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(truth[z])
    inside = (int(np.median(rows)), int(np.median(cols)))
    if not truth[z][inside]:
        inside = (int(rows[len(rows) // 2]), int(cols[len(cols) // 2]))
    empty = np.zeros(truth[z].shape, np.uint8)
    after_one = engine.apply(Click(0, z, *inside, positive=True), empty, 0.5)
    assert after_one[inside] == 1
    assert dice(after_one > 0, truth[z]) > 0.5  # one click captures most of the lesion
    assert engine.computed[z].sum() <= 128 * 128  # the network ran on a patch, not the slice
    # a false-positive blob elsewhere is removed by one negative click on it
    with_blob = after_one.copy()
    with_blob[5:9, 5:9] = 1
    cleaned = engine.apply(Click(0, z, 6, 6, positive=False), with_blob, 0.5)
    assert cleaned[5:9, 5:9].sum() == 0
    np.testing.assert_array_equal(cleaned, after_one)


def test_click_outside_image_is_a_clear_error(sample):
    image, _ = sample
    engine = ClickEngine(Predictor(get_model(None)), image)
    with pytest.raises(ClickOutsideImage, match="outside the image"):
        engine.apply(Click(0, 5, 10_000, 3, True), np.zeros(image.shape[1:], np.uint8), 0.5)
