"""Choose the guided click engine's zoom-in on *training* brains, never validation.

Runs the simulated user of ``napari-unet evaluate-clicks`` with the click-guided engine
on the first ``--cases`` training brains without zoom-in and with each zoom factor and
largest zoomed object (``ClickZoom``, see ``napari_unet/core/click_zoom.py``), and prints
NoC@85/90, Dice@1 and NoC@90 by lesion cross-section size. With ``--output`` it writes a
copy of the model whose sidecar declares the best setting (lowest NoC@90) as a new
version::

    python scripts/tune_click_zoom.py --data runs/synth64 --cases 12 \\
        --zooms 2,3 --max-objects 16,24,32 --from-click 2 --blend 0.5 \\
        --output runs/clicks_zoom/zoom.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="lesion-t1-clicks", help="click-guided model")
    parser.add_argument("--cases", type=int, default=12, help="training brains to tune on")
    parser.add_argument("--zooms", default="2", help="magnifications to try (1 is always run)")
    parser.add_argument("--max-objects", default="32")
    parser.add_argument("--from-click", type=int, default=1, help="zoom from this click on")
    parser.add_argument("--blend", type=float, default=1.0, help="weight of the zoomed answer")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write every setting's figures here")
    parser.add_argument("--output", help="write the model with the best zoom-in here")
    args = parser.parse_args()

    import numpy as np
    import torch

    from napari_unet.core import guided
    from napari_unet.core.checkpoint import new_version_id, save_checkpoint
    from napari_unet.core.click_eval import clicks_to_reach, load_click_tasks, run_engine
    from napari_unet.core.click_eval import summarize as summarize_curves
    from napari_unet.core.click_zoom import ClickZoom
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
        "50-250 px": (areas >= 50) & (areas < 250),
        "250-1000 px": (areas >= 250) & (areas < 1000),
        ">=1000 px": areas >= 1000,
    }
    sys.stdout.write(
        f"{len(loaded)} training brains, {len(areas)} tasks, threshold {bundle.threshold}\n"
        f"{'zoom':>5s} {'max':>5s} {'NoC@85':>7s} {'NoC@90':>7s} {'Dice@1':>7s}  "
        "NoC@90 by cross-section\n"
    )
    results = []
    settings: list[ClickZoom | None] = [None]
    settings += [
        ClickZoom(int(z), int(m), args.from_click, args.blend)
        for z in args.zooms.split(",")
        if int(z) > 1
        for m in args.max_objects.split(",")
    ]
    for setting in settings:
        start = time.perf_counter()
        curves = []
        for _, image, truth, tasks in loaded:
            engine = guided.GuidedClickEngine(predictor, image, zoom=setting)
            curves += run_engine(engine, truth, tasks, 20, bundle.threshold)
        summary = summarize_curves(curves, 20)
        noc = np.array([clicks_to_reach(c, 0.9, 20) for c in curves])
        by_size = {k: (float(noc[m].mean()), int(m.sum())) for k, m in groups.items() if m.any()}
        results.append(
            {
                "zoom": None if setting is None else setting.to_dict(),
                **summary,
                "noc90_by_area": by_size,
                "task_noc90": noc.tolist(),
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        text = ", ".join(f"{k} {v:.2f} ({n})" for k, (v, n) in by_size.items())
        factor, largest = (1, 0) if setting is None else (setting.factor, setting.max_object)
        sys.stdout.write(
            f"{factor:5d} {largest:5d} {summary['noc85']:7.3f} {summary['noc90']:7.3f} "
            f"{summary['dice@1']:7.3f}  {text}\n"
        )
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"model": bundle.version_id, "cases": len(loaded), "results": results},
                handle,
                indent=1,
            )
    if args.output:
        best = min(range(len(settings)), key=lambda k: results[k]["noc90"])
        bundle.click_zoom = settings[best]
        bundle.provenance = {**bundle.provenance, "click_zoom_tuned_from": bundle.version_id}
        bundle.version_id = new_version_id()
        save_checkpoint(bundle, args.output)
        chosen = results[best]["zoom"]
        sys.stdout.write(f"wrote {args.output} ({bundle.version_id}): zoom {chosen}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
