"""Click-consistent refinement (f-BRS) of the click-guided network's answer."""

import numpy as np
import pytest
from scipy import ndimage

from napari_unet.core.click_maps import click_maps, clicked_object
from napari_unet.core.click_refine import ClickRefiner, RefineSettings
from napari_unet.core.clicks import Click, patch_box
from napari_unet.core.guided import GuidedClickEngine
from napari_unet.core.inference import Predictor
from napari_unet.core.io import read_image
from napari_unet.core.models import CLICK_MODEL, get_model
from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1

THRESHOLD = 0.4


@pytest.fixture(scope="module")
def bundle():
    return get_model(CLICK_MODEL)


@pytest.fixture(scope="module")
def patch(bundle):
    return sample_patch(bundle)


def sample_patch(bundle):
    """The sample lesion's largest slice: a 160-px patch and the fp32 network's answers."""
    image = read_image(SAMPLE_T1).data
    truth = read_image(SAMPLE_LESION).data > 0.5
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(truth[z])
    centre = (int(rows.mean()), int(cols.mean()))
    plain = Predictor(bundle, precision="fp32", channels_last=False, fused=False, batch_size=1)
    slab = plain.volume_slab(image, z, 0).astype(np.float32)
    rows, cols = patch_box(*centre, slab.shape[-2:], 160)
    local = slab[:, rows, cols]
    assert local.shape[-2:] == (160, 160)
    stats = plain.fit_stats(image, 3)
    r0, c0 = rows.start, cols.start

    def answer(clicks):
        normalized = plain.prepare_slice(local, stats, click_maps((160, 160), clicks))
        return normalized, plain.predict_prepared(normalized)

    return answer, (centre[0] - r0, centre[1] - c0), image, stats, (z, r0, c0)


def ignored_negative(answer, centre):
    """A border pixel of the clicked object that the network keeps after a negative click."""
    _, first = answer([(*centre, True)])
    found = clicked_object(first >= THRESHOLD, [(*centre, True)])
    for row, col in zip(*np.nonzero(found & ~ndimage.binary_erosion(found)), strict=True):
        _, prob = answer([(*centre, True), (int(row), int(col), False)])
        if prob[row, col] >= THRESHOLD:
            return int(row), int(col)
    raise AssertionError("the network obeys every negative click on this object's border")


def test_refiner_reproduces_the_network_before_it_changes_anything(bundle, patch):
    answer, centre, *_ = patch
    normalized, prob = answer([(*centre, True)])
    refiner = ClickRefiner(bundle)
    features, offset = refiner.features(normalized)
    assert features.shape[1] == 2 * bundle.config.widths()[0]  # skip + up-sampled halves
    tail = refiner._tail_probability(features).numpy()
    np.testing.assert_allclose(tail[offset[0] :, offset[1] :][:160, :160], prob, atol=1e-5)
    # every click already obeyed: nothing to push, so the answer stays the network's
    assert prob[centre] >= THRESHOLD + 0.1
    kept = refiner.refine(normalized, prob, [(*centre, True)], THRESHOLD, prob >= THRESHOLD)
    np.testing.assert_allclose(kept, prob, atol=1e-5)


def test_refinement_makes_the_network_obey_a_negative_click(bundle, patch):
    answer, centre, *_ = patch
    rim = ignored_negative(answer, centre)
    clicks = [(*centre, True), (*rim, False)]
    normalized, prob = answer(clicks)
    assert prob[rim] >= THRESHOLD  # the network ignores the negative click
    focus = prob >= THRESHOLD
    refined = ClickRefiner(bundle).refine(normalized, prob, clicks, THRESHOLD, focus)
    assert refined.shape == prob.shape
    assert refined[rim] < THRESHOLD and refined[centre] >= THRESHOLD  # both clicks obeyed
    changed = np.abs(refined - prob) > 1e-6
    rows, cols = np.nonzero(changed)
    found_rows, found_cols = np.nonzero(focus)
    reach = RefineSettings().reach
    assert rows.min() >= found_rows.min() - reach and cols.max() <= found_cols.max() + reach
    # the object shrinks near the click, it is not wiped out
    assert 0.5 * focus.sum() < (refined >= THRESHOLD).sum() < focus.sum()


def test_refinement_enforces_the_clicks_on_the_blended_answer(bundle, patch):
    answer, centre, *_ = patch
    rim = ignored_negative(answer, centre)
    clicks = [(*centre, True), (*rim, False)]
    normalized, prob = answer(clicks)
    # a zoomed look that is sure of the rim pixel: half of it is 0.3 already
    scale, offset = np.full_like(prob, 0.5), np.full_like(prob, 0.3)
    settings = RefineSettings(margin=0.05)
    refined = ClickRefiner(bundle, settings).refine(
        normalized, prob, clicks, THRESHOLD, prob >= THRESHOLD, (scale, offset)
    )
    assert 0.5 * refined[rim] + 0.3 <= THRESHOLD - 0.05 + 1e-3
    assert 0.5 * refined[centre] + 0.3 >= THRESHOLD


def engine_ignored_negative(predictor, image, stats, positive):
    """A border pixel of the engine's object that the network keeps after a negative click
    there (in the engine's own patch around that click)."""
    engine = GuidedClickEngine(predictor, image, stats, refine=None, zoom=None)
    empty = np.zeros(image.shape[1:], np.uint8)
    found = engine.apply(positive, empty, THRESHOLD) > 0
    key = (positive.axis, positive.index)
    for row, col in zip(*np.nonzero(found & ~ndimage.binary_erosion(found)), strict=True):
        negative = Click(positive.axis, positive.index, int(row), int(col), False)
        engine.clicks[key] = [positive, negative]
        prob, (rows, cols) = engine.object_probability(negative)
        if prob[row - rows.start, col - cols.start] >= THRESHOLD:
            return negative
    raise AssertionError("the network obeys every negative click on this object's border")


def test_guided_engine_refines_only_a_disobeying_answer(bundle, patch):
    _, centre, image, stats, (z, r0, c0) = patch
    predictor = Predictor(bundle, batch_size=1)
    engines = {
        refine: GuidedClickEngine(predictor, image, stats, refine=refine, zoom=None)
        for refine in (None, RefineSettings())
    }
    assert engines[None].refiner is None
    refiner = engines[RefineSettings()].refiner
    calls = []
    original = refiner.refine
    refiner.refine = lambda *a, **k: calls.append(a[2]) or original(*a, **k)
    empty = np.zeros(image.shape[1:], np.uint8)
    positive = Click(0, z, r0 + centre[0], c0 + centre[1], True)
    negative = engine_ignored_negative(predictor, image, stats, positive)
    masks = {}
    for refine, engine in engines.items():
        first = engine.apply(positive, empty, THRESHOLD)
        assert first[positive.row, positive.col]
        masks[refine] = first, engine.apply(negative, first, THRESHOLD)
    assert engines[RefineSettings()].refiner is refiner  # built once, not per click
    assert len(calls) == 1 and len(calls[0]) == 2  # only the disobeyed click was refined
    for first, second in masks.values():
        assert not second[negative.row, negative.col] and second[positive.row, positive.col]
        assert 0 < second.sum() < first.sum()
    # the refined answer is the network's own: it differs from the rule's local removal
    assert (masks[None][1] != masks[RefineSettings()][1]).any()


def test_refine_settings_say_what_is_wrong():
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        RefineSettings(iterations=0)
    with pytest.raises(ValueError, match="margin must be in"):
        RefineSettings(margin=0.6)
    with pytest.raises(ValueError, match="no click channels"):
        ClickRefiner(get_model(None))
