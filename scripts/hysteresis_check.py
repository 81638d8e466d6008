"""Screen hysteresis growth of a model's kept lesions on *training* cases.

Predicts ``--cases`` training volumes once, applies the model's declared post-processing
(threshold, size and extent rule), then grows the kept components into
``probability >= t_lo`` for each ``--grow`` value, and reports mean Dice, lesion F1 and
absolute volume difference against no growth (the model card's pre-registered screen)::

    python scripts/hysteresis_check.py --model lesion-t1 --data runs/synth64 --cases 16 \\
        --json out/hysteresis_train16.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lesion-t1")
    parser.add_argument("--data", required=True, help="dataset whose training cases are used")
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--grow", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the per-case scores here (new file)")
    args = parser.parse_args()
    if args.json is not None and args.json.exists():
        parser.error(f"{args.json} exists; choose a new file (nothing is overwritten)")

    import torch

    from napari_unet.core.editing import model_postprocess
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.metrics import dice, lesion_f1, volume_ml
    from napari_unet.core.models import get_model
    from napari_unet.core.training.datasets import find_cases

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    predictor = Predictor(bundle, batch_size=16)
    cases = [c for c in find_cases(args.data) if c.split == "train"][: args.cases]
    settings = [None, *args.grow]
    rows = []
    for done, case in enumerate(cases, start=1):
        image = read_image(case.images[0])
        spacing = image.geometry.display_spacing
        truth = read_image(case.mask).data > 0.5
        prob = predictor.predict_volume(image.data, axis=0)
        kept = model_postprocess(
            (prob >= bundle.threshold).astype(np.uint8),
            bundle.min_lesion_voxels,
            bundle.min_lesion_extent_mm,
            spacing,
        )
        row = {"case": case.case, "truth_ml": volume_ml(truth, spacing)}
        for grow in settings:
            mask = (
                kept
                if grow is None
                else model_postprocess(kept, probability=prob, grow_threshold=grow)
            )
            key = "none" if grow is None else f"{grow:g}"
            row[key] = {
                "dice": dice(mask > 0, truth),
                "lesion_f1": lesion_f1(mask > 0, truth),
                "abs_volume_diff_ml": abs(volume_ml(mask > 0, spacing) - row["truth_ml"]),
            }
        rows.append(row)
        sys.stdout.write(f"predicted {done}/{len(cases)} {case.case}\n")
    summary = {}
    for grow in settings:
        key = "none" if grow is None else f"{grow:g}"
        summary[key] = {
            metric: float(np.mean([row[key][metric] for row in rows]))
            for metric in ("dice", "lesion_f1", "abs_volume_diff_ml")
        }
        summary[key]["mean_of_dice_and_f1"] = (summary[key]["dice"] + summary[key]["lesion_f1"]) / 2
    sys.stdout.write(f"{'grow to':>8} {'Dice':>7} {'F1':>7} {'mean':>7} {'|dV| mL':>8}\n")
    for key, values in summary.items():
        sys.stdout.write(
            f"{key:>8} {values['dice']:7.4f} {values['lesion_f1']:7.4f} "
            f"{values['mean_of_dice_and_f1']:7.4f} {values['abs_volume_diff_ml']:8.2f}\n"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"model": bundle.version_id, "cases": rows, "summary": summary}
        args.json.write_text(json.dumps(payload, indent=1))
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
