"""Bootstrap intervals of validation means and the paired comparison of two models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.core.evaluation import compare_evaluations
from napari_unet.core.statistics import bootstrap_mean_ci, paired_difference

from .helpers import write_nifti


def test_interval_of_constant_values_is_a_point_and_repeats_exactly():
    assert bootstrap_mean_ci([0.7] * 12) == pytest.approx((0.7, 0.7))
    values = np.random.default_rng(3).random(10)
    assert bootstrap_mean_ci(values) == bootstrap_mean_ci(values)  # fixed seed


def test_interval_narrows_with_more_cases_like_one_over_sqrt_n():
    rng = np.random.default_rng(0)
    few, many = rng.random(10), rng.random(1000)
    width_few = np.subtract(*bootstrap_mean_ci(few)[::-1])
    width_many = np.subtract(*bootstrap_mean_ci(many)[::-1])
    assert few.mean() > bootstrap_mean_ci(few)[0] and few.mean() < bootstrap_mean_ci(few)[1]
    assert width_few / width_many == pytest.approx(np.sqrt(100), rel=0.3)


def test_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    for trial in range(200):
        sample = rng.normal(0.6, 0.2, size=40)
        low, high = bootstrap_mean_ci(sample, resamples=2000, seed=trial)
        covered += low <= 0.6 <= high
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_difference_sees_a_shift_the_unpaired_intervals_hide():
    rng = np.random.default_rng(2)
    a = rng.random(10)  # cases vary a lot ...
    b = a + 0.05  # ... but b is better on every one
    result = paired_difference("dice", a, b)
    assert result.difference == pytest.approx(0.05)
    assert result.ci_low == pytest.approx(0.05) and result.fraction_b_ahead == 1.0
    low_b, _ = bootstrap_mean_ci(b)
    assert low_b < a.mean()  # unpaired intervals overlap
    noise = paired_difference("dice", a, a + rng.normal(0, 0.05, 10))
    assert noise.ci_low < 0 < noise.ci_high and 0.05 < noise.fraction_b_ahead < 0.95
    with pytest.raises(ValueError, match="same non-empty list"):
        paired_difference("dice", a, b[:5])


def _evaluation(path, dices):
    cases = [
        {"case": f"c{i}", "dice": d, "lesion_f1": d, "abs_volume_diff_ml": 1 - d}
        for i, d in enumerate(dices)
    ]
    path.write_text(json.dumps({"cases": cases, "summary": {}}))
    return path


def test_compare_matches_cases_by_name_and_refuses_other_cases(tmp_path, capsys):
    a = _evaluation(tmp_path / "a.json", [0.5, 0.6, 0.7, 0.8])
    b = _evaluation(tmp_path / "b.json", [0.6, 0.7, 0.8, 0.9])
    dice, f1, volume = compare_evaluations(a, b)
    assert dice.metric == "dice" and dice.difference == pytest.approx(0.1)
    assert volume.difference == pytest.approx(-0.1)
    out = tmp_path / "diff.json"
    assert main(["compare", str(a), str(b), "--json", str(out)]) == 0
    assert "+0.1000" in capsys.readouterr().out
    assert json.loads(out.read_text())["differences"][0]["cases"] == 4
    other = _evaluation(tmp_path / "other.json", [0.5, 0.6, 0.7])
    assert main(["compare", str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert "other.json" in err and "c3" in err
    (tmp_path / "junk.json").write_text("{}")
    assert main(["compare", str(a), str(tmp_path / "junk.json")]) == 2
    assert "not an evaluation" in capsys.readouterr().err


def test_evaluate_reports_the_interval(tmp_path, capsys):
    truth = np.zeros((12, 12, 6), np.uint8)
    truth[3:8, 3:8, 1:4] = 1
    pred = np.zeros_like(truth)
    pred[4:8, 3:8, 1:4] = 1
    for name, data in (("p", pred), ("t", truth)):
        (tmp_path / name).mkdir()
        for case in ("x", "y"):
            write_nifti(
                tmp_path / name / f"{case}.nii.gz", data if case == "x" else truth, np.eye(4)
            )
    out = tmp_path / "m.json"
    args = ["evaluate", "--pred", str(tmp_path / "p"), "--truth", str(tmp_path / "t")]
    assert main([*args, "--json", str(out)]) == 0
    summary = json.loads(out.read_text())["summary"]
    dice_x = 2 * 60 / (60 + 75)
    assert summary["dice_ci95"] == pytest.approx([dice_x, 1.0])
    assert "95 % bootstrap interval over 2 cases" in capsys.readouterr().out


def test_grouped_interval_resamples_brains_not_slices():
    from napari_unet.core.statistics import bootstrap_grouped_mean_ci

    singles = [[v] for v in np.random.default_rng(4).random(30)]
    assert bootstrap_grouped_mean_ci(singles) == pytest.approx(
        bootstrap_mean_ci([g[0] for g in singles]), abs=1e-12
    )  # one item per group: the plain bootstrap
    # 10 brains whose slices agree with each other: far wider than 100 independent slices
    rng = np.random.default_rng(5)
    brains = [[level] * 10 for level in rng.random(10) * 10]
    grouped = bootstrap_grouped_mean_ci(brains)
    flat = bootstrap_mean_ci([v for g in brains for v in g])
    assert grouped[1] - grouped[0] > 2.5 * (flat[1] - flat[0])
    pooled = np.mean([v for g in brains for v in g])
    assert grouped[0] < pooled < grouped[1]
    with pytest.raises(ValueError, match="non-empty group"):
        bootstrap_grouped_mean_ci([[], []])
