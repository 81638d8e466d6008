"""Measure the guided engine's negative-click threshold raise (``negative_raise``).

Runs the simulated user of ``napari-unet evaluate-clicks`` with the click-guided engine
on the first ``--cases`` brains of a split, without the raise first (the rule before
session 24; printed as margin 0) and then with each margin and window, and prints
NoC@85/90, Dice@1 and NoC@90 by lesion cross-section size. Tune on
training brains only; ``--split val`` is for a pre-registered test on fresh brains, where
``--json`` keeps per-brain task figures for a paired comparison::

    python scripts/tune_negative_rule.py --data runs/synth_screen48 --cases 48 \\
        --margins 1.0,1.1,1.2 --windows 4,6,8,12 --json out/negative_rule.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="train", choices=["train", "val"])
    parser.add_argument("--model", default="lesion-t1-clicks", help="click-guided model")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--margins", default="1.1")
    parser.add_argument("--windows", default="8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write every setting's per-brain figures here")
    args = parser.parse_args()

    import numpy as np
    import torch

    from napari_unet.core.click_eval import clicks_to_reach, load_click_tasks, run_engine
    from napari_unet.core.click_eval import summarize as summarize_curves
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
    settings = [None] + [
        (float(m), float(w)) for m in args.margins.split(",") for w in args.windows.split(",")
    ]
    sys.stdout.write(
        f"{len(loaded)} {args.split} brains, {len(areas)} tasks, threshold {bundle.threshold}\n"
        "margin window NoC@85 NoC@90 Dice@1  NoC@90 <50 / 50-250 / 250-1000 / >=1000 px\n"
    )
    results = []
    for setting in settings:
        start = time.perf_counter()
        options = {"negative_raise": False}
        if setting is not None:
            options = {
                "negative_raise": True,
                "negative_margin": setting[0],
                "negative_window": setting[1],
            }
        curves, per_case = [], []
        for name, image, truth, tasks in loaded:
            engine = GuidedClickEngine(predictor, image, **options)
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
        margin, window = setting if setting else (0.0, 0.0)
        sys.stdout.write(
            f"{margin:6.2f} {window:6.1f} {summary['noc85']:6.3f} {summary['noc90']:6.3f} "
            f"{summary['dice@1']:6.3f}  {text}\n"
        )
        sys.stdout.flush()
        results.append(
            {
                "negative_raise": options,
                **summary,
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
