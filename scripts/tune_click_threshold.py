"""Choose a click-guided model's threshold on *training* brains, never on the validation set.

Runs the simulated user (the same one as ``napari-unet evaluate-clicks``) with the
click-guided engine on the first ``--cases`` training brains at each threshold, and
writes a copy of the checkpoint whose sidecar declares the threshold with the lowest
NoC@90 (ties: lowest NoC@85)::

    python scripts/tune_click_threshold.py \\
        --model napari_unet/models/lesion_t1_clicks.safetensors \\
        --data runs/synth_hypo --cases 12 --output runs/clicks_tuned.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--cases", type=int, default=12, help="training brains to tune on")
    parser.add_argument("--thresholds", default="0.4,0.5,0.6,0.7")
    parser.add_argument("--output", required=True, help="the tuned checkpoint (.safetensors)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from napari_unet.core.checkpoint import load_checkpoint, new_version_id, save_checkpoint
    from napari_unet.core.click_eval import load_click_tasks, run_engine, summarize
    from napari_unet.core.guided import GuidedClickEngine
    from napari_unet.core.inference import Predictor

    torch.set_num_threads(args.threads)
    bundle = load_checkpoint(args.model)
    predictor = Predictor(bundle, batch_size=1)
    loaded = load_click_tasks(args.data, "train", args.cases)
    results = []
    for threshold in (float(t) for t in args.thresholds.split(",")):
        curves = []
        for _, image, truth, tasks in loaded:
            engine = GuidedClickEngine(predictor, image)
            curves += run_engine(engine, truth, tasks, 20, threshold)
        summary = summarize(curves, 20)
        results.append((summary["noc90"], summary["noc85"], threshold, summary))
        sys.stdout.write(
            f"threshold {threshold:.2f}  NoC@85 {summary['noc85']:.3f}  "
            f"NoC@90 {summary['noc90']:.3f}  Dice@1 {summary['dice@1']:.3f}  "
            f"({summary['tasks']} tasks)\n"
        )
    noc90, noc85, threshold, summary = min(results, key=lambda r: (r[0], r[1]))
    bundle.threshold = threshold
    bundle.provenance = {
        **bundle.provenance,
        "threshold_tuned_from": bundle.version_id,
        "threshold_tuning": {
            "training_cases": [name for name, *_ in loaded],
            "tasks": summary["tasks"],
            "train_noc90": noc90,
            "train_noc85": noc85,
        },
    }
    bundle.version_id = new_version_id()
    save_checkpoint(bundle, args.output)
    sys.stdout.write(
        json.dumps({"threshold": threshold}) + f"\nwrote {args.output} ({bundle.version_id})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
