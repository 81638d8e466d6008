"""Measure click-consistent refinement (f-BRS, ``GuidedClickEngine(refine=...)``).

Runs the simulated user of ``napari-unet evaluate-clicks`` with the click-guided engine
on the first ``--cases`` brains of a split, without refinement first (today's engine) and
then with each combination of the settings, and prints NoC@85/90, Dice@1, NoC@90 by
lesion cross-section size and the median time of one refinement. Tune on training
brains only; ``--split val`` is for a pre-registered test on fresh brains, where
``--json`` keeps per-brain task figures for a paired comparison::

    python scripts/tune_click_refine.py --data runs/synth_screen48 --cases 48 \\
        --penalties 1e-3,1e-2 --margins 0.1 --json out/refine_screen.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="train", choices=["train", "val"])
    parser.add_argument("--model", default="lesion-t1-clicks", help="click-guided model")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--iterations", default="20")
    parser.add_argument("--margins", default="0.1")
    parser.add_argument("--penalties", default="1e-3")
    parser.add_argument("--reaches", default="16")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unrefined engine")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write every setting's per-brain figures here")
    args = parser.parse_args()

    import numpy as np
    import torch

    from napari_unet.core import click_refine
    from napari_unet.core.click_eval import clicks_to_reach, load_click_tasks, run_engine
    from napari_unet.core.click_eval import summarize as summarize_curves
    from napari_unet.core.click_refine import RefineSettings
    from napari_unet.core.guided import GuidedClickEngine
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    predictor = Predictor(bundle, batch_size=1)
    loaded = load_click_tasks(args.data, args.split, args.cases)
    areas = np.array(
        [int(truth[t.index][t.rows, t.cols].sum()) for _, _, truth, tasks in loaded for t in tasks]
    )
    bounds = [(0, 50), (50, 250), (250, 1000), (1000, 10**9)]
    grid = itertools.product(
        [int(v) for v in args.iterations.split(",")],
        _floats(args.margins),
        _floats(args.penalties),
        [int(v) for v in args.reaches.split(",")],
    )
    settings = ([] if args.no_baseline else [None]) + [
        RefineSettings(iterations=i, margin=m, penalty=p, reach=r) for i, m, p, r in grid
    ]
    refine_times: list[float] = []
    original = click_refine.ClickRefiner.refine

    def timed(self, *a, **k):
        start = time.perf_counter()
        out = original(self, *a, **k)
        refine_times.append(time.perf_counter() - start)
        return out

    click_refine.ClickRefiner.refine = timed
    sys.stdout.write(
        f"{len(loaded)} {args.split} brains, {len(areas)} tasks, threshold {bundle.threshold}\n"
        "iter margin penalty reach NoC@85 NoC@90 Dice@1  NoC@90 <50 / 50-250 / 250-1000 / "
        ">=1000 px  refinements, median ms\n"
    )
    results = []
    for setting in settings:
        start = time.perf_counter()
        refine_times.clear()
        curves, per_case = [], []
        for name, image, truth, tasks in loaded:
            engine = GuidedClickEngine(predictor, image, refine=setting)
            case_curves = run_engine(engine, truth, tasks, 20, bundle.threshold)
            curves += case_curves
            per_case.append(
                {
                    "case": name,
                    "task_noc90": [clicks_to_reach(c, 0.9, 20) for c in case_curves],
                    "task_noc85": [clicks_to_reach(c, 0.85, 20) for c in case_curves],
                    "task_dice1": [c[0] for c in case_curves],
                }
            )
        summary = summarize_curves(curves, 20)
        noc = np.array([clicks_to_reach(c, 0.9, 20) for c in curves])
        by_size = [noc[(areas >= lo) & (areas < hi)] for lo, hi in bounds]
        text = " / ".join(f"{g.mean():.2f}" if g.size else "-" for g in by_size)
        label = (
            "off"
            if setting is None
            else f"{setting.iterations:4d} {setting.margin:6.2f} {setting.penalty:7.0e} "
            f"{setting.reach:5d}"
        )
        median_ms = 1000 * float(np.median(refine_times)) if refine_times else 0.0
        sys.stdout.write(
            f"{label:>26} {summary['noc85']:6.3f} {summary['noc90']:6.3f} "
            f"{summary['dice@1']:6.3f}  {text}  {len(refine_times)}, {median_ms:.0f}\n"
        )
        sys.stdout.flush()
        results.append(
            {
                "refine": None if setting is None else setting.__dict__,
                **summary,
                "refinements": len(refine_times),
                "refine_median_ms": median_ms,
                "cases": per_case,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"model": bundle.version_id, "split": args.split, "results": results}, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
