"""The learned lesion filter: its measures, its keep decision, the sidecar and the fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from napari_unet.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from napari_unet.core.editing import model_postprocess
from napari_unet.core.lesion_filter import (
    FEATURES,
    LesionFilter,
    LesionFilterError,
    component_features,
    fit_logistic,
)
from napari_unet.core.session import SegmentationSession


def _two_blobs() -> tuple[np.ndarray, np.ndarray]:
    """A confident 4x6x6 block and a faint 1x2x2 speck, as probabilities and a mask."""
    prob = np.zeros((12, 20, 20), np.float32)
    prob[2:6, 2:8, 2:8] = 0.95
    prob[3, 3, 3] = 0.99
    prob[9, 14:16, 14:16] = 0.4
    return prob, (prob >= 0.3).astype(np.uint8)


def _peak_filter(cut: float = 0.5) -> LesionFilter:
    """Keeps candidates whose peak probability is above 0.7 (a logistic step on it)."""
    n = len(FEATURES)
    weights = [0.0] * n
    weights[FEATURES.index("peak_probability")] = 50.0
    mean = [0.0] * n
    mean[FEATURES.index("peak_probability")] = 0.7
    return LesionFilter(tuple(mean), (1.0,) * n, tuple(weights), 0.0, cut)


def test_component_features_measure_each_candidate():
    prob, mask = _two_blobs()
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    rows = component_features(labels, prob, spacing=(2.0, 1.0, 1.0))
    assert rows.shape == (2, len(FEATURES)) and count == 2
    block, speck = rows
    col = {name: i for i, name in enumerate(FEATURES)}
    assert block[col["log10_voxels"]] == pytest.approx(math.log10(4 * 6 * 6))
    assert block[col["axial_extent_mm"]] == 8.0  # 4 slices of 2 mm
    assert block[col["inplane_extent_mm"]] == 6.0
    assert block[col["peak_probability"]] == pytest.approx(0.99)
    assert block[col["fraction_over_0.9"]] == 1.0 and block[col["box_fill"]] == 1.0
    assert speck[col["log10_voxels"]] == pytest.approx(math.log10(4))
    assert speck[col["peak_probability"]] == pytest.approx(0.4)
    assert speck[col["fraction_over_0.9"]] == 0.0


def test_filter_keeps_what_it_scores_as_lesion_then_growth_applies():
    prob, mask = _two_blobs()
    kept = _peak_filter().apply(mask, prob, (1.0, 1.0, 1.0))
    assert kept[2:6, 2:8, 2:8].all() and kept.sum() == 4 * 6 * 6  # the speck is gone
    prob[2:6, 8, 2:8] = 0.1  # a faint rim next to the kept block: growth takes it
    grown = model_postprocess(
        mask, spacing=(1.0, 1.0, 1.0), probability=prob, grow_threshold=0.05,
        lesion_filter=_peak_filter(),
    )  # fmt: skip
    assert grown.sum() == 4 * 7 * 6 and grown[9].sum() == 0
    with pytest.raises(ValueError, match="needs the probability map"):
        model_postprocess(mask, lesion_filter=_peak_filter())
    # the widget's session derives whole volumes with the same filter
    session = SegmentationSession(prob.shape, threshold=0.3, lesion_filter=_peak_filter())
    assert session.derive(prob)[9].sum() == 0 and session.derive(prob)[2:6, 2:8, 2:8].all()


def test_filter_round_trips_through_the_sidecar_and_bad_ones_name_the_file(tiny_bundle, tmp_path):
    tiny_bundle.lesion_filter = _peak_filter(cut=0.35)
    path = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.lesion_filter == tiny_bundle.lesion_filter
    prob, mask = _two_blobs()
    assert loaded.postprocess(mask, (1.0, 1.0, 1.0), probability=prob)[9].sum() == 0
    meta = json.loads(sidecar_path(path).read_text())
    meta["lesion_filter"]["weights"] = meta["lesion_filter"]["weights"][:3]
    sidecar_path(path).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"m\.json.*weights has 3 values"):
        load_checkpoint(path)
    meta["lesion_filter"] = None  # no filter: the plain size and extent rule
    sidecar_path(path).write_text(json.dumps(meta))
    assert load_checkpoint(path).lesion_filter is None


def test_filter_refuses_numbers_it_cannot_use():
    good = _peak_filter()
    with pytest.raises(LesionFilterError, match="between 0 and 1"):
        LesionFilter(good.mean, good.scale, good.weights, good.bias, 1.0)
    with pytest.raises(LesionFilterError, match="finite"):
        LesionFilter(good.mean, good.scale, good.weights, float("nan"), 0.5)
    with pytest.raises(LesionFilterError, match="differ from this version"):
        LesionFilter.from_dict({**good.to_dict(), "features": ["size"]})


def test_fit_separates_true_from_false_candidates(rng):
    n = 400
    touches = rng.random(n) < 0.3
    features = rng.normal(0, 1, (n, len(FEATURES)))
    features[:, FEATURES.index("peak_probability")] += 3.0 * touches
    mean, scale, weights, bias = fit_logistic(features, touches)
    model = LesionFilter(mean, scale, weights, bias, 0.5)
    predicted = model.scores(features) >= 0.5
    assert (predicted == touches).mean() > 0.9
    assert np.argmax(np.abs(weights)) == FEATURES.index("peak_probability")
    with pytest.raises(LesionFilterError, match="touch a lesion and candidates"):
        fit_logistic(features, np.zeros(n, bool))
