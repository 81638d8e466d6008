"""Compare predicted and true masks on disk (files or folders matched by case name)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .io import case_name, check_same_grid, read_image
from .metrics import CaseMetrics, evaluate_case, summarize
from .statistics import PairedDifference, paired_difference, paired_grouped_difference


def _pairs(pred: Path, truth: Path) -> list[tuple[str, Path, Path]]:
    if pred.is_file() and truth.is_file():
        return [(case_name(truth), pred, truth)]
    if pred.is_dir() and truth.is_dir():

        def index(folder: Path, strip: tuple[str, ...]) -> dict[str, Path]:
            out = {}
            for path in sorted(folder.glob("*.nii*")):
                name = case_name(path)
                for suffix in strip:
                    if name.endswith(suffix):
                        name = name[: -len(suffix)]
                out[name] = path
            return out

        predictions = index(pred, ("_lesion", "_pred", "_mask"))
        truths = index(truth, ("_lesion", "_mask", "_label"))
        for name in list(predictions):  # nnU-Net image names carry a channel suffix: _0000
            base = re.sub(r"_\d{4}$", "", name)
            if name not in truths and base in truths:
                predictions.setdefault(base, predictions.pop(name))
        missing = sorted(set(truths) - set(predictions))
        if missing:
            raise ValueError(f"{pred}: no prediction for case(s) {missing[:5]}")
        if not truths:
            raise ValueError(f"{truth}: no NIfTI masks found")
        return [(name, predictions[name], truths[name]) for name in sorted(truths)]
    raise ValueError(f"--pred {pred} and --truth {truth} must both be files or both folders")


def evaluate_paths(pred: str | Path, truth: str | Path) -> tuple[list[CaseMetrics], dict]:
    """Per-case metrics and their means; refuses masks whose shape or affine differ."""
    results = []
    for name, pred_path, truth_path in _pairs(Path(pred), Path(truth)):
        p, t = read_image(pred_path), read_image(truth_path)
        check_same_grid(p, t, "refusing to compare")
        results.append(evaluate_case(name, p.data > 0.5, t.data > 0.5, t.geometry.display_spacing))
    return results, summarize(results)


COMPARED_METRICS = ("dice", "lesion_f1", "abs_volume_diff_ml")


def _cases_of(path: Path) -> dict[str, dict]:
    try:
        cases = json.loads(path.read_text())["cases"]
        return {case["case"]: case for case in cases}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: not an evaluation written by 'napari-unet evaluate --json' ({exc})"
        ) from exc


def compare_evaluations(path_a: str | Path, path_b: str | Path) -> list[PairedDifference]:
    """Paired bootstrap differences (b - a) of two evaluations of the same cases."""
    cases_a, cases_b = _cases_of(Path(path_a)), _cases_of(Path(path_b))
    if set(cases_a) != set(cases_b):
        only_a = sorted(set(cases_a) - set(cases_b))[:5]
        only_b = sorted(set(cases_b) - set(cases_a))[:5]
        raise ValueError(
            f"{path_a} and {path_b} score different cases (only in the first: {only_a}, "
            f"only in the second: {only_b}); evaluate both models on the same data"
        )
    names = sorted(cases_a)
    return [
        paired_difference(
            metric, [cases_a[n][metric] for n in names], [cases_b[n][metric] for n in names]
        )
        for metric in COMPARED_METRICS
    ]


CLICK_METRICS = (("noc90", "task_noc90"), ("noc85", "task_noc85"), ("dice@1", "task_dice1"))


def _json_of(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read an evaluation JSON ({exc})") from exc


def is_click_evaluation(path: str | Path) -> bool:
    """True for a file written by ``napari-unet evaluate-clicks --json``."""
    data = _json_of(Path(path))
    return isinstance(data, dict) and "guided" in data and "max_clicks" in data


def compare_click_evaluations(
    path_a: str | Path, path_b: str | Path, engine: str = "guided"
) -> list[PairedDifference]:
    """Paired differences (b - a) of two click evaluations, resampling brains.

    Both must hold the same brains and the same lesion slices (the tasks come from the
    truth, so two models evaluated on one dataset always do). NoC@85 and Dice@1 are
    compared when both files record them per task (evaluate-clicks since session 12).
    """
    cases = []
    for path in (Path(path_a), Path(path_b)):
        data = _json_of(path)
        if not (isinstance(data, dict) and "cases" in data and engine in data):
            raise ValueError(f"{path}: not written by 'napari-unet evaluate-clicks --json'")
        cases.append({c["case"]: c for c in data["cases"]})
    if set(cases[0]) != set(cases[1]):
        raise ValueError(
            f"{path_a} and {path_b} score different brains; run evaluate-clicks on the same data"
        )
    names = sorted(cases[0])
    for name in names:
        if cases[0][name]["task_slices"] != cases[1][name]["task_slices"]:
            raise ValueError(f"{name}: the two evaluations simulated different lesion slices")
    differences = []
    for metric, field in CLICK_METRICS:
        key = f"{engine}_{field}"
        if not all(key in c[n] for c in cases for n in names):
            continue
        differences.append(
            paired_grouped_difference(
                metric, [cases[0][n][key] for n in names], [cases[1][n][key] for n in names]
            )
        )
    return differences


SECTION_SIZE_EDGES_PX = (50, 250, 1000)


def click_noc_by_section_size(
    path_a: str | Path,
    path_b: str | Path,
    engine: str = "guided",
    edges_px: tuple[int, ...] = SECTION_SIZE_EDGES_PX,
) -> list[dict]:
    """NoC@90 of two click evaluations by lesion-section area (pixels), one row per bin.

    Bins are ``[0, e0), [e0, e1), ..., [e_last, inf)``. Each row holds the bin, its number of
    tasks and both means (``None`` where a bin is empty). Files from before session 12, which
    do not record each task's area, are refused.
    """
    key, area_key = f"{engine}_task_noc90", "task_area_px"
    per_file = []
    for path in (Path(path_a), Path(path_b)):
        data = _json_of(path)
        try:
            per_file.append(
                [(a, n) for c in data["cases"] for a, n in zip(c[area_key], c[key], strict=True)]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"{path}: no per-task areas and NoC@90 ({exc}); re-run evaluate-clicks --json"
            ) from exc
    bounds = (0, *edges_px, None)
    rows = []
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        means = []
        for tasks in per_file:
            values = [n for a, n in tasks if a >= low and (high is None or a < high)]
            means.append(sum(values) / len(values) if values else None)
        count = sum(1 for a, _ in per_file[0] if a >= low and (high is None or a < high))
        rows.append(
            {
                "min_px": low,
                "max_px": high,
                "tasks": count,
                "noc90_a": means[0],
                "noc90_b": means[1],
            }
        )
    return rows
