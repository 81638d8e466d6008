"""Choose the guided click engine's local-edit rule on *training* brains, never validation.

Runs the simulated user of ``napari-unet evaluate-clicks`` with the click-guided engine
on the first ``--cases`` training brains for each combination of the disc every click
decides by itself (``CLICK_DISC``, a radius in pixels) and the reach of a local positive
edit (``WINDOW_SCALE`` times the click's distance to the mask), and prints NoC@85/90 and
NoC@90 by lesion cross-section size::

    python scripts/tune_click_rule.py --data runs/synth_hypo --cases 12 \\
        --discs 0,1,2 --windows 2,3
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="lesion-t1-clicks", help="click-guided model")
    parser.add_argument("--cases", type=int, default=12, help="training brains to tune on")
    parser.add_argument("--discs", default="0,1,2")
    parser.add_argument("--windows", default="2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np
    import torch

    from napari_unet.core import guided
    from napari_unet.core.click_eval import (
        clicks_to_reach,
        load_click_tasks,
        run_engine,
        summarize,
    )
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    predictor = Predictor(bundle, batch_size=1)
    loaded = load_click_tasks(args.data, "train", args.cases)
    areas = np.array(
        [int(truth[t.index][t.rows, t.cols].sum()) for _, _, truth, tasks in loaded for t in tasks]
    )
    groups = {
        "<50 px": areas < 50,
        "50-800 px": (areas >= 50) & (areas < 800),
        ">=800 px": areas >= 800,
    }
    sys.stdout.write(
        f"{len(loaded)} training brains, {len(areas)} tasks, threshold {bundle.threshold}\n"
        f"{'disc':>5s} {'window':>7s} {'NoC@85':>7s} {'NoC@90':>7s}  NoC@90 by cross-section\n"
    )
    for disc in (float(d) for d in args.discs.split(",")):
        for window in (float(w) for w in args.windows.split(",")):
            guided.CLICK_DISC, guided.WINDOW_SCALE = disc, window
            curves = []
            for _, image, truth, tasks in loaded:
                engine = guided.GuidedClickEngine(predictor, image)
                curves += run_engine(engine, truth, tasks, 20, bundle.threshold)
            summary = summarize(curves, 20)
            noc = np.array([clicks_to_reach(c, 0.9, 20) for c in curves])
            by_size = ", ".join(
                f"{k} {noc[m].mean():.2f} ({m.sum()})" for k, m in groups.items() if m.any()
            )
            sys.stdout.write(
                f"{disc:5.1f} {window:7.1f} {summary['noc85']:7.3f} "
                f"{summary['noc90']:7.3f}  {by_size}\n"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
