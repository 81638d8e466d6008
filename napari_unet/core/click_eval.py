"""Standard interactive-segmentation metrics from a click simulator: NoC@85/90, Dice@k.

For each validation lesion, the simulated user works on axial slices through it
(its largest cross-section, and optionally two more). The first click goes to the
lesion's centre; each later click to the centre of the largest remaining error
inside a box around the lesion, positive on misses, negative on false positives.
Dice is measured inside that box. NoC@X is the number of clicks needed to reach
Dice X, capped at ``max_clicks`` (the cap counts when it is never reached).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .click_maps import next_click
from .clicks import Click
from .metrics import dice
from .statistics import bootstrap_grouped_mean_ci

MARGIN = 16  # pixels around the lesion's cross-section where Dice is measured


@dataclass(frozen=True)
class LesionSlice:
    """One simulated-user task: a lesion's cross-section on an axial slice."""

    index: int  # axial slice
    rows: slice
    cols: slice


def lesion_slices(truth: np.ndarray, per_lesion: int = 3, min_area: int = 10) -> list[LesionSlice]:
    """Axial tasks for every 3D lesion of ``truth`` (Z, Y, X): largest section first."""
    labels, count = ndimage.label(truth > 0)
    tasks = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        component = labels[box] == k
        areas = component.sum(axis=(1, 2))
        order = [int(np.argmax(areas))]
        if per_lesion > 1:
            nonzero = np.nonzero(areas >= min_area)[0]
            if len(nonzero) > 2:
                quarter = nonzero[len(nonzero) // 4], nonzero[(3 * len(nonzero)) // 4]
                order += [int(q) for q in quarter if int(q) not in order]
        for z in order[:per_lesion]:
            if areas[z] < min_area and z != order[0]:
                continue
            ys, xs = np.nonzero(component[z])
            y0, x0 = box[1].start + ys.min(), box[2].start + xs.min()
            y1, x1 = box[1].start + ys.max() + 1, box[2].start + xs.max() + 1
            tasks.append(
                LesionSlice(
                    box[0].start + z,
                    slice(max(0, y0 - MARGIN), min(truth.shape[1], y1 + MARGIN)),
                    slice(max(0, x0 - MARGIN), min(truth.shape[2], x1 + MARGIN)),
                )
            )
    return tasks


def load_click_tasks(
    data: str, split: str = "train", cases: int | None = None, per_lesion: int = 3
) -> list[tuple[str, np.ndarray, np.ndarray, list[LesionSlice]]]:
    """(name, image, truth, tasks) of the first ``cases`` brains of a dataset split with lesions.

    Tuning scripts call this with ``split="train"`` so that a choice made on it never
    sees the validation brains.
    """
    from .io import read_image
    from .training.datasets import find_cases

    found = [c for c in find_cases(data) if c.split == split][:cases]
    loaded = []
    for case in found:
        image = read_image(case.images[0]).data.astype(np.float32)
        truth = read_image(case.mask).data > 0.5
        tasks = lesion_slices(truth, per_lesion=per_lesion)
        if tasks:
            loaded.append((case.case, image, truth, tasks))
    return loaded


def simulate_task(
    engine, truth: np.ndarray, task: LesionSlice, max_clicks: int = 20, threshold: float = 0.5
) -> list[float]:
    """Dice inside the task's box after each of up to ``max_clicks`` simulated clicks."""
    truth2d = truth[task.index] > 0
    region = np.zeros_like(truth2d)
    region[task.rows, task.cols] = True
    current = np.zeros(truth2d.shape, dtype=np.uint8)
    if hasattr(engine, "clear"):
        engine.clear(0, task.index)
    scores = []
    for _ in range(max_clicks):
        nxt = next_click(current > 0, truth2d, region)
        if nxt is None:  # perfect: every further click keeps it
            scores += [1.0] * (max_clicks - len(scores))
            break
        row, col, positive = nxt
        current = engine.apply(Click(0, task.index, row, col, positive), current, threshold)
        scores.append(dice(current[task.rows, task.cols] > 0, truth2d[task.rows, task.cols]))
    return scores


def clicks_to_reach(scores: list[float], target: float, cap: int) -> int:
    for k, score in enumerate(scores, start=1):
        if score >= target:
            return k
    return cap


def summarize(curves: list[list[float]], max_clicks: int) -> dict[str, float]:
    """NoC@85/90 and mean Dice after 1, 3 and 5 clicks over simulated tasks."""
    if not curves:
        return {}
    summary = {
        "tasks": len(curves),
        "noc85": float(np.mean([clicks_to_reach(c, 0.85, max_clicks) for c in curves])),
        "noc90": float(np.mean([clicks_to_reach(c, 0.90, max_clicks) for c in curves])),
    }
    for k in (1, 3, 5):
        if k <= max_clicks:
            summary[f"dice@{k}"] = float(np.mean([c[k - 1] for c in curves]))
    return summary


def automatic_dice(
    probability: np.ndarray, truth: np.ndarray, tasks: list[LesionSlice], threshold: float
) -> list[float]:
    """Dice of the automatic mask inside each task's box (the zero-click reference)."""
    return [
        dice(probability[t.index][t.rows, t.cols] >= threshold, truth[t.index][t.rows, t.cols] > 0)
        for t in tasks
    ]


def run_engine(
    engine,
    truth: np.ndarray,
    tasks: list[LesionSlice],
    max_clicks: int = 20,
    threshold: float = 0.5,
) -> list[list[float]]:
    """Simulated sessions of one engine on one volume's tasks."""
    return [simulate_task(engine, truth, t, max_clicks, threshold) for t in tasks]


def validate_clicks(bundle, volumes, device: str = "auto", max_clicks: int = 5) -> dict[str, float]:
    """Quick click-model validation during training: Dice after 1, 3, 5 clicks."""
    from .guided import GuidedClickEngine
    from .inference import Predictor
    from .normalization import identity_stats

    predictor = Predictor(bundle, device=device, batch_size=1)
    curves = []
    for volume in volumes:
        image = volume.image.astype(np.float32)
        stats = identity_stats(image.shape[0])
        tasks = lesion_slices(volume.mask, per_lesion=1)
        curves += run_engine(
            GuidedClickEngine(predictor, image, stats),
            volume.mask,
            tasks,
            max_clicks,
            bundle.threshold,
        )
    summary = summarize(curves, max_clicks)
    if not summary:
        return {}
    score = float(np.mean([summary["dice@1"], summary["dice@3"], summary["dice@5"]]))
    return {
        "click_dice_1": summary["dice@1"],
        "click_dice_3": summary["dice@3"],
        "click_dice_5": summary["dice@5"],
        "click_score": score,
    }


def evaluate_click_engines(
    cases,
    auto_bundle,
    click_bundle,
    max_clicks: int = 20,
    per_lesion: int = 3,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """NoC and Dice@k of both click engines, and the automatic masks, on (name, image, truth)
    or (name, image, truth, spacing) cases.

    ``image`` and ``truth`` are (Z, Y, X) volumes in display order; tasks are axial. With a
    case's (Z, Y, X) ``spacing`` in mm, the models run at their own spacing, as in napari.
    """
    from .click_spacing import ResampledClicks
    from .clicks import ClickEngine
    from .guided import GuidedClickEngine
    from .inference import Predictor

    auto = Predictor(auto_bundle, device=device)
    guided = Predictor(click_bundle, device=device, batch_size=1)
    curves: dict[str, list[list[float]]] = {"baseline": [], "guided": []}
    zero_click: dict[str, list[float]] = {"automatic": [], "guided, no clicks": []}
    per_case = []
    for done, (name, image, truth, *voxel) in enumerate(cases, start=1):
        spacing = voxel[0] if voxel else None
        tasks = lesion_slices(truth, per_lesion=per_lesion)
        if tasks:
            indices = sorted({t.index for t in tasks})
            auto_stats = auto.fit_stats(image, 3)
            click_stats = guided.fit_stats(image, 3)
            for key, predictor, stats in (
                ("automatic", auto, auto_stats),
                ("guided, no clicks", guided, click_stats),
            ):
                prob = predictor.predict_volume_slices(image, indices, stats, spacing=spacing)
                zero_click[key] += automatic_dice(prob, truth, tasks, predictor.bundle.threshold)
            base = run_engine(  # without a spacing: each case's own voxels
                ResampledClicks(ClickEngine, auto, image, auto_stats, spacing),
                truth,
                tasks,
                max_clicks,
                auto_bundle.threshold,
            )
            ours = run_engine(
                ResampledClicks(GuidedClickEngine, guided, image, click_stats, spacing),
                truth,
                tasks,
                max_clicks,
                click_bundle.threshold,
            )
            curves["baseline"] += base
            curves["guided"] += ours
            per_case.append(
                {
                    "case": name,
                    "tasks": len(tasks),
                    "baseline_noc90": float(
                        np.mean([clicks_to_reach(c, 0.9, max_clicks) for c in base])
                    ),
                    "guided_noc90": float(
                        np.mean([clicks_to_reach(c, 0.9, max_clicks) for c in ours])
                    ),
                    # per task, to see which lesions the mean hides (the cap counts as reached)
                    "task_slices": [t.index for t in tasks],
                    "task_area_px": [int(truth[t.index][t.rows, t.cols].sum()) for t in tasks],
                    "baseline_task_noc90": [clicks_to_reach(c, 0.9, max_clicks) for c in base],
                    "guided_task_noc90": [clicks_to_reach(c, 0.9, max_clicks) for c in ours],
                    "baseline_task_noc85": [clicks_to_reach(c, 0.85, max_clicks) for c in base],
                    "guided_task_noc85": [clicks_to_reach(c, 0.85, max_clicks) for c in ours],
                    "baseline_task_dice1": [float(c[0]) for c in base],
                    "guided_task_dice1": [float(c[0]) for c in ours],
                }
            )
        if progress:
            progress(done, len(cases))
    engines = {k: summarize(curves[k], max_clicks) for k in ("baseline", "guided")}
    for key, summary in engines.items():  # brains resampled, not slices: they share a scan
        if per_case:
            groups = [c[f"{key}_task_noc90"] for c in per_case]
            summary["noc90_ci95"] = list(bootstrap_grouped_mean_ci(groups))
    return {
        "max_clicks": max_clicks,
        "per_lesion": per_lesion,
        "zero_clicks_dice": {k: float(np.mean(v)) if v else None for k, v in zero_click.items()},
        "baseline": engines["baseline"],
        "guided": engines["guided"],
        "mean_curves": {
            k: [float(np.mean([c[i] for c in v])) for i in range(max_clicks)] if v else []
            for k, v in curves.items()
        },
        "cases": per_case,
        "auto_model": auto_bundle.version_id,
        "click_model": click_bundle.version_id,
    }
