"""Choose a model's post-processing on training or held-out tuning cases, never on a
validation set that decides anything.

Predicts ``--cases`` training volumes once, then scores every combination of probability
threshold, minimum component size (voxels) and minimum axial extent (mm) by the mean of
Dice and lesion-wise F1 (the two quality targets; ``--criterion dice`` for Dice alone),
and writes a copy of the checkpoint whose sidecar declares the best combination::

    python scripts/tune_postprocess.py --model runs/lesion_t1_v2/best.safetensors \\
        --data runs/synth_v2 --cases 16 --output runs/lesion_t1_v2/tuned.safetensors

``--copy-from OTHER`` skips the tuning and declares OTHER's post-processing instead (for a
fine-tuned model that keeps the choice made for its parent). ``--grow-threshold T`` adds
hysteresis growth of the kept lesions to ``probability >= T``: with ``--copy-from`` it is
declared as given (the bundled model uses 0.1, chosen with ``scripts/hysteresis_check.py``);
when tuning, every setting is scored with growth to each value given, and the best
setting's growth is declared (tuning without it scores and declares no growth)::

    python scripts/tune_postprocess.py --model M --copy-from M --grow-threshold 0.1 \
        --output runs/final.safetensors

``--split val`` tunes on a dataset's ``imagesTs`` cases instead: brains written only for
tuning (``napari-unet synth --train 0 --val N --val-start S`` with seeds no other run uses),
so the choice is made where the network behaves as on unseen brains rather than on the
brains it was trained on. ``--thresholds`` and ``--min-extents`` replace the default grid.

The scoring (``napari_unet.core.postprocess_search``) labels each volume once per threshold
and gives exactly the scores of ``model_postprocess`` followed by ``dice`` and ``lesion_f1``.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", help="dataset whose training cases the tuning uses")
    parser.add_argument("--copy-from", help="take this checkpoint's post-processing, no tuning")
    parser.add_argument("--cases", type=int, default=16, help="cases to tune on")
    parser.add_argument(
        "--split",
        choices=("train", "val"),
        default="train",
        help="tune on the dataset's training cases, or on its imagesTs cases (a tuning set)",
    )
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6, 0.7])
    parser.add_argument(
        "--min-extents",
        type=float,
        nargs="+",
        default=[0.0, 2.0, 3.0, 5.0, 7.0, 9.0],
        help="minimum axial extents (mm) to score",
    )
    parser.add_argument("--output", required=True, help="the tuned checkpoint (.safetensors)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--criterion", choices=("dice+f1", "dice"), default="dice+f1")
    parser.add_argument(
        "--grow-threshold",
        type=float,
        nargs="+",
        help="kept lesions grow to probability >= this (tuning: one or more to score)",
    )
    args = parser.parse_args()
    if not args.data and not args.copy_from:
        parser.error("--data is required unless --copy-from is given")
    for value in args.thresholds:
        if not 0.0 < value < 1.0:
            parser.error(f"--thresholds must lie between 0 and 1, got {value}")
    if any(value < 0 for value in args.min_extents):
        parser.error("--min-extents must not be negative")
    for value in args.grow_threshold or []:
        if not 0.0 < value < 1.0:
            parser.error(f"--grow-threshold must lie between 0 and 1, got {value}")
    if args.copy_from and args.grow_threshold and len(args.grow_threshold) > 1:
        parser.error("with --copy-from, give one --grow-threshold to declare")

    import torch

    from napari_unet.core.checkpoint import load_checkpoint, new_version_id, save_checkpoint
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.models import resolve_model_path
    from napari_unet.core.postprocess_search import search_postprocess
    from napari_unet.core.training.datasets import find_cases

    torch.set_num_threads(args.threads)
    bundle = load_checkpoint(resolve_model_path(args.model))
    if args.copy_from:
        parent = load_checkpoint(resolve_model_path(args.copy_from))
        bundle.threshold = parent.threshold
        bundle.min_lesion_voxels = parent.min_lesion_voxels
        bundle.grow_threshold = parent.grow_threshold
        bundle.min_lesion_extent_mm = parent.min_lesion_extent_mm
        bundle.lesion_filter = parent.lesion_filter
        if args.grow_threshold:
            bundle.grow_threshold = args.grow_threshold[0]
        bundle.provenance = {
            **bundle.provenance,
            "postprocess_tuned_from": bundle.version_id,
            "postprocess_from": parent.version_id,
        }
        bundle.version_id = new_version_id()
        save_checkpoint(bundle, args.output)
        sys.stdout.write(f"wrote {args.output} ({bundle.version_id}), post-processing of ")
        sys.stdout.write(f"{parent.version_id}\n")
        return 0
    predictor = Predictor(bundle, batch_size=16)
    cases = [c for c in find_cases(args.data) if c.split == args.split][: args.cases]
    if not cases:
        parser.error(f"{args.data}: no {args.split} cases to tune on")
    predicted = []
    for done, case in enumerate(cases, start=1):
        image = read_image(case.images[0])
        truth = read_image(case.mask).data > 0.5
        prob = predictor.predict_volume(image.data, axis=0).astype(np.float16)
        predicted.append((prob, truth, image.geometry.display_spacing))
        sys.stdout.write(f"predicted {done}/{len(cases)} {case.case}\n")
    results = [
        (r.dice, r.lesion_f1, r.threshold, r.min_voxels, r.min_extent_mm, r.grow_threshold)
        for r in search_postprocess(
            predicted,
            thresholds=tuple(args.thresholds),
            min_voxels=(0, 10, 30, 100),
            min_extents_mm=tuple(args.min_extents),
            progress=lambda line: sys.stdout.write(line + "\n"),
            grow_thresholds=tuple(args.grow_threshold or [None]),
        )
    ]
    for mean_dice, mean_f1, threshold, min_voxels, min_extent, grow in results:
        grown = "" if grow is None else f"  grow to {grow:.2f}"
        sys.stdout.write(
            f"threshold {threshold:.2f}  min voxels {min_voxels:4d}  "
            f"min extent {min_extent:4.1f} mm{grown}  "
            f"Dice {mean_dice:.4f}  lesion F1 {mean_f1:.4f}\n"
        )

    def score(result: tuple) -> float:
        return result[0] if args.criterion == "dice" else (result[0] + result[1]) / 2

    best_dice, best_f1, threshold, min_voxels, min_extent, grow = max(results, key=score)
    bundle.threshold = float(threshold)
    bundle.min_lesion_voxels = int(min_voxels)
    bundle.min_lesion_extent_mm = float(min_extent)
    bundle.grow_threshold = grow  # what the chosen setting was scored with
    bundle.lesion_filter = None  # the rule was scored without a learned filter
    bundle.provenance = {
        **bundle.provenance,
        "postprocess_tuned_from": bundle.version_id,
        "postprocess_tuning": {
            "split": args.split,
            "training_cases": [c.case for c in cases],
            "train_dice": best_dice,
            "train_lesion_f1": best_f1,
            "criterion": args.criterion,
        },
    }
    bundle.version_id = new_version_id()
    save_checkpoint(bundle, args.output)
    sys.stdout.write(
        json.dumps(
            {
                "threshold": threshold,
                "min_lesion_voxels": min_voxels,
                "min_lesion_extent_mm": min_extent,
                "grow_threshold": grow,
            }
        )
        + "\n"
        f"wrote {args.output} ({bundle.version_id})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
