"""Would keeping confident small components rescue lacunes? Measured on *training* cases.

The tuned post-processing drops components thinner than a few mm along the axial axis,
and with them almost every lacune the network does see. This script asks whether a
second rule, "keep any component whose peak probability reaches P, whatever its size",
gives those lacunes back without the false candidates. It predicts ``--cases`` training
volumes once and scores every (threshold, size, extent, P) setting from one component
table per threshold::

    python scripts/confidence_rescue_check.py --model docs/models/lesion_t1_ctx1.safetensors \\
        --data runs/synth64 --cases 48 --json out/rescue_ctx1.json

It prints the best setting without the rescue and the best with it (mean of Dice and
lesion F1, the tuning criterion), and how many true lesions under 0.5 mL each finds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

RESCUE_PEAKS = (None, 0.8, 0.9, 0.95, 0.98, 0.99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--cases", type=int, default=48)
    parser.add_argument("--first", type=int, default=0, help="skip this many training cases")
    parser.add_argument("--json", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from napari_unet.core.checkpoint import load_checkpoint
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.postprocess_search import component_table, label_truth
    from napari_unet.core.training.datasets import find_cases

    torch.set_num_threads(args.threads)
    bundle = load_checkpoint(args.model)
    predictor = Predictor(bundle, batch_size=16)
    cases = [c for c in find_cases(args.data) if c.split == "train"]
    cases = cases[args.first : args.first + args.cases]
    thresholds = (0.3, 0.4, 0.5, 0.6, 0.7)
    tables: dict[float, list] = {t: [] for t in thresholds}
    small_truth = []  # per case: labels of true lesions under 0.5 mL
    for done, case in enumerate(cases, start=1):
        image = read_image(case.images[0])
        truth = read_image(case.mask).data > 0.5
        spacing = image.geometry.display_spacing
        prob = predictor.predict_volume(image.data, axis=0).astype(np.float32)
        labels, count = label_truth(truth)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        small_truth.append({k + 1 for k in range(count) if sizes[k] * voxel_ml < 0.5})
        for threshold in thresholds:
            tables[threshold].append(component_table(prob, threshold, labels, count, spacing))
        sys.stdout.write(f"predicted {done}/{len(cases)} {case.case}\n")

    rows = []
    for threshold, voxels, extent, rescue in itertools.product(
        thresholds, (0, 10, 30, 100), (0.0, 2.0, 3.0, 5.0, 7.0, 9.0), RESCUE_PEAKS
    ):
        dices, f1s, small_found = [], [], 0
        for table, small in zip(tables[threshold], small_truth, strict=True):
            kept = np.ones(table.sizes.shape, dtype=bool)
            if voxels:
                kept &= table.sizes >= voxels
            if extent:
                kept &= table.extents_mm >= extent
            if rescue is not None:
                kept |= table.peaks >= rescue
            dice, f1 = table.scores_of(kept)
            dices.append(dice)
            f1s.append(f1)
            found = set(table.pair_truth[kept[table.pair_pred]].tolist())
            small_found += len(found & small)
        rows.append(
            {
                "threshold": threshold,
                "min_voxels": voxels,
                "min_extent_mm": extent,
                "rescue_peak": rescue,
                "dice": float(np.mean(dices)),
                "lesion_f1": float(np.mean(f1s)),
                "small_found": small_found,
            }
        )
    small_total = sum(len(s) for s in small_truth)

    def score(row: dict) -> float:
        return (row["dice"] + row["lesion_f1"]) / 2

    plain = max((r for r in rows if r["rescue_peak"] is None), key=score)
    rescued = max((r for r in rows if r["rescue_peak"] is not None), key=score)
    for name, row in (("without rescue", plain), ("with rescue", rescued)):
        sys.stdout.write(
            f"{name:15s} threshold {row['threshold']:.1f}  min voxels {row['min_voxels']:3d}  "
            f"extent {row['min_extent_mm']:.0f} mm  rescue {row['rescue_peak']}  "
            f"Dice {row['dice']:.4f}  F1 {row['lesion_f1']:.4f}  "
            f"lesions < 0.5 mL found {row['small_found']}/{small_total}\n"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(
        json.dumps(
            {
                "model": args.model,
                "cases": [c.case for c in cases],
                "small_lesions": small_total,
                "best_without_rescue": plain,
                "best_with_rescue": rescued,
                "rows": rows,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
