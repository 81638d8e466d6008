"""`compare` on two click evaluations: per-task NoC paired by brain, brains resampled."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.core.evaluation import (
    click_noc_by_section_size,
    compare_click_evaluations,
    is_click_evaluation,
)
from napari_unet.core.statistics import paired_grouped_difference


def _click_json(path, per_brain_noc90, shift=0, areas=None):
    cases = []
    for i, nocs in enumerate(per_brain_noc90):
        nocs = [n + shift for n in nocs]
        extra = {"task_area_px": areas[i]} if areas else {}
        cases.append(
            {
                **extra,
                "case": f"v_{i:04d}",
                "tasks": len(nocs),
                "task_slices": list(range(len(nocs))),
                "guided_task_noc90": nocs,
                "guided_task_noc85": [max(1, n - 1) for n in nocs],
                "guided_task_dice1": [0.8] * len(nocs),
            }
        )
    path.write_text(json.dumps({"max_clicks": 20, "guided": {}, "baseline": {}, "cases": cases}))
    return path


def test_grouped_difference_pools_slices_and_resamples_brains():
    a = [[4, 6], [2], [10, 12, 14]]
    b = [[3, 5], [2], [9, 11, 13]]
    d = paired_grouped_difference("noc90", a, b)
    assert d.cases == 3
    assert d.mean_a == pytest.approx(48 / 6) and d.mean_b == pytest.approx(43 / 6)
    assert d.difference == pytest.approx(-5 / 6)
    assert d.ci_low < d.difference < d.ci_high <= 0  # b never worse on any brain
    assert d.fraction_b_ahead == 0.0
    # a brain with one slice for one model and two for the other is refused
    with pytest.raises(ValueError, match="brain 1"):
        paired_grouped_difference("noc90", a, [[3, 5], [2, 2], [9, 11, 13]])


def test_a_noisy_brain_widens_the_interval_more_than_slices_would():
    rng = np.random.default_rng(0)
    a = [list(rng.integers(1, 20, size=6)) for _ in range(12)]
    b = [[n - 1 for n in g] for g in a]
    b[0] = [n + 8 for n in a[0]]  # one brain much worse for b, its six slices together
    d = paired_grouped_difference("noc90", a, b)
    slices_a = np.concatenate(a).astype(float)
    slices_b = np.concatenate(b).astype(float)
    from napari_unet.core.statistics import paired_difference

    flat = paired_difference("noc90", slices_a, slices_b)
    assert d.difference == pytest.approx(flat.difference)
    assert (d.ci_high - d.ci_low) > 1.3 * (flat.ci_high - flat.ci_low)


def test_compare_command_reads_click_evaluations(tmp_path, capsys):
    nocs = [[4, 6], [2], [10, 12, 14], [5]]
    a = _click_json(tmp_path / "a.json", nocs)
    b = _click_json(tmp_path / "b.json", nocs, shift=-1)
    assert is_click_evaluation(a) and not is_click_evaluation(_plain(tmp_path / "p.json"))
    names = [d.metric for d in compare_click_evaluations(a, b)]
    assert names == ["noc90", "noc85", "dice@1"]
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert "over 4 brains" in out
    saved = {d["metric"]: d for d in json.loads((tmp_path / "d.json").read_text())["differences"]}
    assert saved["noc90"]["difference"] == pytest.approx(-1.0)
    assert saved["dice@1"]["difference"] == pytest.approx(0.0)


def test_compare_reports_noc90_by_section_size(tmp_path, capsys):
    nocs = [[4, 6], [2], [10, 12, 14], [5]]
    areas = [[30, 49], [50], [249, 250, 5000], [999]]
    a = _click_json(tmp_path / "a.json", nocs, areas=areas)
    b = _click_json(tmp_path / "b.json", nocs, shift=-1, areas=areas)
    rows = click_noc_by_section_size(a, b)
    assert [(r["min_px"], r["max_px"], r["tasks"]) for r in rows] == [
        (0, 50, 2),
        (50, 250, 2),
        (250, 1000, 2),
        (1000, None, 1),
    ]
    assert rows[0]["noc90_a"] == pytest.approx(5.0) and rows[0]["noc90_b"] == pytest.approx(4.0)
    assert rows[1]["noc90_a"] == pytest.approx(6.0)  # 2 and 10
    assert rows[2]["noc90_a"] == pytest.approx(8.5)  # 12 and 5
    assert rows[3]["noc90_b"] == pytest.approx(13.0)
    assert main(["compare", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 0
    assert ">=1000" in capsys.readouterr().out
    saved = json.loads((tmp_path / "d.json").read_text())["noc90_by_section_size"]
    assert saved == rows
    # files without per-task areas still compare; the table is left out with a note
    plain_a = _click_json(tmp_path / "pa.json", nocs)
    assert main(["compare", str(plain_a), str(b)]) == 0
    assert "no NoC@90 by section size" in capsys.readouterr().err


def test_compare_refuses_click_evaluations_of_other_slices(tmp_path, capsys):
    a = _click_json(tmp_path / "a.json", [[4, 6], [2]])
    b = _click_json(tmp_path / "b.json", [[4, 6], [2, 3]])
    assert main(["compare", str(a), str(b)]) == 2
    assert "different lesion slices" in capsys.readouterr().err


def _plain(path):
    path.write_text(json.dumps({"cases": [{"case": "v", "dice": 1.0}], "summary": {}}))
    return path
