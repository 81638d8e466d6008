"""scripts/pool_evaluations.py: several evaluations become one that `compare` accepts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from napari_unet.core.evaluation import compare_evaluations

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "pool_evaluations.py"


def _evaluation(path: Path, dices: dict[str, float]) -> Path:
    cases = [
        {
            "case": n,
            "dice": d,
            "lesion_f1": d,
            "abs_volume_diff_ml": 0.0,
            "abs_lesion_count_diff": 0,
            "hd95_mm": 1.0,
        }
        for n, d in dices.items()
    ]
    path.write_text(json.dumps({"cases": cases, "summary": {}}))
    return path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_pools_skips_ranges_and_feeds_compare(tmp_path):
    first = {f"v_{i:04d}": 0.5 for i in range(12)}
    second = {f"v_{i:04d}": 0.7 for i in range(50, 54)}
    a1, a2 = _evaluation(tmp_path / "a1.json", first), _evaluation(tmp_path / "a2.json", second)
    b1 = _evaluation(tmp_path / "b1.json", {n: d + 0.1 for n, d in first.items()})
    b2 = _evaluation(tmp_path / "b2.json", {n: d + 0.1 for n, d in second.items()})
    for name, parts in (("a.json", (a1, a2)), ("b.json", (b1, b2))):
        done = _run(*map(str, parts), "--skip", "v_0000-0009", "--output", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        assert "pooled 6 cases" in done.stdout
    pooled = json.loads((tmp_path / "a.json").read_text())
    assert [c["case"] for c in pooled["cases"]] == ["v_0010", "v_0011", *second]
    assert len(pooled["skipped"]) == 10
    dice = compare_evaluations(tmp_path / "a.json", tmp_path / "b.json")[0]
    assert dice.cases == 6
    assert abs(dice.difference - 0.1) < 1e-9


def test_refuses_a_case_twice_and_an_existing_output(tmp_path):
    a = _evaluation(tmp_path / "a.json", {"v_0001": 0.5})
    b = _evaluation(tmp_path / "b.json", {"v_0001": 0.6})
    done = _run(str(a), str(b), "--output", str(tmp_path / "p.json"))
    assert done.returncode != 0
    assert "v_0001 is in both" in done.stderr
    assert not (tmp_path / "p.json").exists()
    done = _run(str(a), "--output", str(b))
    assert done.returncode == 2 and "exists" in done.stderr
    assert json.loads(b.read_text())["cases"][0]["dice"] == 0.6  # untouched
