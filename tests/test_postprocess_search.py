"""The fast post-processing search scores exactly what model_postprocess + metrics give."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from napari_unet.core.editing import model_postprocess
from napari_unet.core.metrics import dice, lesion_f1
from napari_unet.core.postprocess_search import (
    component_table,
    label_truth,
    search_postprocess,
)

THRESHOLDS = (0.3, 0.5, 0.7)
MIN_VOXELS = (0, 10, 40)
MIN_EXTENTS = (0.0, 2.0, 5.0, 7.0)


def _blobby_case(seed: int, spacing, empty_truth: bool = False):
    """Smoothed noise: many components of varied size and thickness, some touching truth."""
    rng = np.random.default_rng(seed)
    prob = ndimage.gaussian_filter(rng.random((18, 40, 40)), (0.8, 1.5, 1.5))
    prob = ((prob - prob.min()) / np.ptp(prob)).astype(np.float16)
    truth = ndimage.gaussian_filter(rng.random((18, 40, 40)), 1.5) > 0.53
    if empty_truth:
        truth[:] = False
    return prob, truth, spacing


def _brute_force(cases, threshold, min_voxels, min_extent, grow=None):
    dices, f1s = [], []
    for prob, truth, spacing in cases:
        mask = (prob >= threshold).astype(np.uint8)
        cleaned = (
            model_postprocess(
                mask, min_voxels, min_extent, spacing, probability=prob, grow_threshold=grow
            )
            > 0
        )
        dices.append(dice(cleaned, truth))
        f1s.append(lesion_f1(cleaned, truth))
    return float(np.mean(dices)), float(np.mean(f1s))


def test_search_equals_brute_force_on_every_setting():
    cases = [
        _blobby_case(0, (1.0, 1.0, 1.0)),
        _blobby_case(1, (3.0, 0.9, 0.9)),  # thick slices: extent in mm, not slices
        _blobby_case(2, (2.5, 1.0, 1.0), empty_truth=True),
        (np.zeros((6, 20, 20), np.float16), np.zeros((6, 20, 20), bool), (1.0, 1.0, 1.0)),
    ]
    results = search_postprocess(cases, THRESHOLDS, MIN_VOXELS, MIN_EXTENTS)
    grid = list(itertools.product(THRESHOLDS, MIN_VOXELS, MIN_EXTENTS))
    assert len(results) == len(grid)
    distinct = set()
    for result, (threshold, voxels, extent) in zip(results, grid, strict=True):
        assert (result.threshold, result.min_voxels, result.min_extent_mm) == (
            threshold,
            voxels,
            extent,
        )
        expected = _brute_force(cases, threshold, voxels, extent)
        assert (result.dice, result.lesion_f1) == expected  # exact, not approximate
        distinct.add(expected)
    # the grid really discriminates: a table that ignored the filters would not pass
    assert len(distinct) > len(grid) // 3


def test_growth_search_equals_brute_force_on_every_setting():
    cases = [
        _blobby_case(3, (1.0, 1.0, 1.0)),
        _blobby_case(4, (3.0, 0.9, 0.9)),
        _blobby_case(5, (2.5, 1.0, 1.0), empty_truth=True),
    ]
    grows = (None, 0.2, 0.4)
    results = search_postprocess(cases, THRESHOLDS, MIN_VOXELS, MIN_EXTENTS, grow_thresholds=grows)
    grid = [
        setting
        for setting in itertools.product(grows, THRESHOLDS, MIN_VOXELS, MIN_EXTENTS)
        if setting[0] is None or setting[0] < setting[1]
    ]
    assert len(results) == len(grid) == 36 + 36 + 24
    changed = 0
    for result, (grow, threshold, voxels, extent) in zip(results, grid, strict=True):
        assert (result.grow_threshold, result.threshold) == (grow, threshold)
        expected = _brute_force(cases, threshold, voxels, extent, grow)
        assert (result.dice, result.lesion_f1) == expected  # exact, not approximate
        if grow is not None:
            changed += expected != _brute_force(cases, threshold, voxels, extent)
    assert changed > 20  # growth really changes the scores, so the check can fail


def test_one_case_tables_cover_empty_and_full_overlap():
    truth = np.zeros((8, 16, 16), bool)
    truth[2:6, 4:8, 4:8] = True
    prob = np.zeros(truth.shape, np.float16)
    prob[2:6, 4:8, 4:8] = 0.9  # finds the lesion exactly
    prob[0, 12:14, 12:14] = 0.9  # one-slice false positive of 4 voxels
    labels, count = label_truth(truth)
    table = component_table(prob, 0.5, labels, count, (1.0, 1.0, 1.0))
    assert sorted(table.sizes.tolist()) == [4, 64]
    assert table.scores(0, 0.0) == pytest.approx((2 * 64 / (68 + 64), 2 / 3))
    assert table.scores(5, 0.0) == (1.0, 1.0)  # the 4-voxel blob is dropped
    assert table.scores(0, 2.0) == (1.0, 1.0)  # and it is one slice (1 mm) thick
    assert table.scores(100, 0.0) == (0.0, 0.0)  # everything dropped: the lesion is missed
    empty = component_table(np.zeros_like(prob), 0.5, labels, count, (1.0, 1.0, 1.0))
    assert empty.scores(0, 0.0) == (0.0, 0.0)


def test_refuses_mismatched_shapes():
    labels, count = label_truth(np.zeros((4, 5, 6), bool))
    with pytest.raises(ValueError, match="same shape"):
        component_table(np.zeros((4, 5, 7), np.float16), 0.5, labels, count, (1, 1, 1))


def test_peaks_and_kept_masks_match_scipy_and_the_size_rule():
    prob, truth, spacing = _blobby_case(3, (1.0, 1.0, 1.0))
    labels, count = label_truth(truth)
    table = component_table(prob.astype(np.float32), 0.6, labels, count, spacing)
    components, n = ndimage.label(prob >= 0.6, structure=np.ones((3, 3, 3)))
    assert n == len(table.sizes) > 3
    expected = ndimage.maximum(prob.astype(np.float32), components, np.arange(1, n + 1))
    np.testing.assert_array_equal(table.peaks, np.asarray(expected, dtype=table.peaks.dtype))
    # a boolean mask equal to the size rule scores exactly what the rule scores
    for voxels in (0, 10, 40):
        assert table.scores_of(table.sizes >= voxels) == table.scores(voxels, 0.0)
    # keeping only the components whose peak is high changes the answer
    high = table.peaks >= np.median(table.peaks)
    assert 0 < high.sum() < n
    assert table.scores_of(high) != table.scores(0, 0.0)
