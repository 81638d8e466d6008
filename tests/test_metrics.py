"""ISLES 2022 metrics on masks with known answers."""

import numpy as np
import pytest

from napari_unet.core.metrics import (
    dice,
    evaluate_case,
    hausdorff95,
    lesion_count,
    lesion_f1,
    summarize,
    volume_ml,
)


def _cube(shape, lo, hi):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return mask


def test_dice_known_values():
    a = _cube((10, 10, 10), (0, 0, 0), (4, 4, 4))  # 64 voxels
    b = _cube((10, 10, 10), (2, 0, 0), (6, 4, 4))  # 64 voxels, 32 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0


def test_lesion_f1_and_count():
    truth = _cube((20, 20, 20), (0, 0, 0), (3, 3, 3)) | _cube(
        (20, 20, 20), (10, 10, 10), (13, 13, 13)
    )
    pred = _cube((20, 20, 20), (1, 1, 1), (2, 2, 2)) | _cube(
        (20, 20, 20), (16, 16, 16), (18, 18, 18)
    )
    assert lesion_count(truth) == 2 and lesion_count(pred) == 2
    # one true lesion found (tp=1), one missed (fn=1), one false blob (fp=1): F1 = 2/4
    assert lesion_f1(pred, truth) == pytest.approx(0.5)
    assert lesion_f1(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    # diagonal neighbours are one lesion (26-connectivity)
    diag = np.zeros((5, 5, 5), bool)
    diag[1, 1, 1] = diag[2, 2, 2] = True
    assert lesion_count(diag) == 1


def test_volume_and_hd95_use_spacing():
    a = _cube((30, 30, 30), (5, 5, 5), (15, 15, 15))
    assert volume_ml(a, (1.0, 1.0, 2.0)) == pytest.approx(2.0)
    shifted = _cube((30, 30, 30), (8, 5, 5), (18, 15, 15))
    assert hausdorff95(a, shifted, (1.0, 1.0, 1.0)) == pytest.approx(3.0, abs=0.01)
    assert hausdorff95(a, shifted, (2.0, 1.0, 1.0)) == pytest.approx(6.0, abs=0.01)
    assert hausdorff95(a, np.zeros_like(a), (1, 1, 1)) == float("inf")


def test_evaluate_case_and_summary():
    truth = _cube((10, 10, 10), (0, 0, 0), (4, 4, 4))
    result = evaluate_case("c", truth, truth, (1, 1, 1))
    assert result.dice == 1.0 and result.abs_volume_diff_ml == 0 and result.hd95_mm == 0
    summary = summarize([result, evaluate_case("e", np.zeros_like(truth), truth, (1, 1, 1))])
    assert summary["mean_dice"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        evaluate_case("x", truth[:5], truth, (1, 1, 1))
