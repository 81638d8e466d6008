"""Fit a model's learned lesion filter on tuning brains and declare it in a checkpoint copy.

Predicts ``--cases`` cases of a dataset's ``--split`` (``val``: its ``imagesTs``, brains
written only for tuning), labels ``probability >= threshold`` into 26-connected candidates,
measures each (``napari_unet.core.lesion_filter.FEATURES``) and whether it touches a true
lesion, and fits a standardized logistic regression. The keep cut is chosen from 0.05 to
0.95 by the mean of Dice and lesion F1 over the same cases, scored with the model's growth
exactly as ``model_postprocess`` applies it. The copy declares the filter in place of the
size and extent rule (both set to 0)::

    python scripts/fit_lesion_filter.py --model lesion-t1 --data runs/synth_tune1050 \\
        --split val --cases 48 --output runs/w16l1_lf/filtered.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

CUTS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", choices=("train", "val"), default="val")
    parser.add_argument("--cases", type=int, default=48)
    parser.add_argument("--l2", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", required=True, help="the checkpoint copy (.safetensors)")
    args = parser.parse_args()

    import torch

    from napari_unet.core.checkpoint import load_checkpoint, new_version_id, save_checkpoint
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.lesion_filter import LesionFilter, component_features, fit_logistic
    from napari_unet.core.models import resolve_model_path
    from napari_unet.core.postprocess_search import (
        component_table,
        containing_components,
        label_truth,
    )
    from napari_unet.core.training.datasets import find_cases

    torch.set_num_threads(args.threads)
    bundle = load_checkpoint(resolve_model_path(args.model))
    predictor = Predictor(bundle, batch_size=16)
    cases = [c for c in find_cases(args.data) if c.split == args.split][: args.cases]
    if not cases:
        parser.error(f"{args.data}: no {args.split} cases to fit on")
    grow = bundle.grow_threshold
    tables = []  # per case: (candidate table, grown table or None, containing index)
    features, touches = [], []
    for done, case in enumerate(cases, start=1):
        image = read_image(case.images[0])
        truth_labels, count = label_truth(read_image(case.mask).data > 0.5)
        prob = predictor.predict_volume(image.data, axis=0)
        spacing = image.geometry.display_spacing
        high = component_table(
            prob, bundle.threshold, truth_labels, count, spacing, keep_labels=True
        )
        features.append(component_features(high.labels, prob, spacing))
        touches.append(high.overlaps > 0)
        low, inside = None, None
        if grow is not None and grow < bundle.threshold:
            low = component_table(prob, grow, truth_labels, count, spacing, keep_labels=True)
            inside = containing_components(high, low)
            low = dataclasses.replace(low, labels=None)
        tables.append((dataclasses.replace(high, labels=None), low, inside))
        found = len(high.sizes)
        sys.stdout.write(f"predicted {done}/{len(cases)} {case.case}: {found} candidates\n")
    mean, scale, weights, bias = fit_logistic(
        np.concatenate(features), np.concatenate(touches), l2=args.l2
    )

    # the scores do not depend on the cut: computed once per case (the cut only enters here)
    model = LesionFilter(mean, scale, weights, bias, 0.5)
    case_scores = [model.scores(rows) if len(rows) else np.zeros(0) for rows in features]

    def scores_at(cut: float) -> tuple[float, float]:
        dices, f1s = [], []
        for (high, low, inside), scores in zip(tables, case_scores, strict=True):
            kept = scores >= cut
            if low is None:
                dice, f1 = high.scores_of(kept)
            else:
                kept_low = np.zeros(low.sizes.shape, dtype=bool)
                kept_low[inside[kept]] = True
                dice, f1 = low.scores_of(kept_low)
            dices.append(dice)
            f1s.append(f1)
        return float(np.mean(dices)), float(np.mean(f1s))

    curve = {cut: scores_at(cut) for cut in CUTS}
    for cut, (dice, f1) in curve.items():
        sys.stdout.write(f"cut {cut:.2f}  Dice {dice:.4f}  lesion F1 {f1:.4f}\n")
    cut = max(CUTS, key=lambda c: (curve[c][0] + curve[c][1]) / 2)
    bundle.lesion_filter = LesionFilter(mean, scale, weights, bias, cut)
    bundle.min_lesion_voxels = 0
    bundle.min_lesion_extent_mm = 0.0
    candidates = int(sum(len(t) for t in touches))
    bundle.provenance = {
        **bundle.provenance,
        "lesion_filter_fitted_from": bundle.version_id,
        "lesion_filter_fitting": {
            "data": args.data,
            "split": args.split,
            "cases": [c.case for c in cases],
            "candidates": candidates,
            "touching": int(sum(t.sum() for t in touches)),
            "dice": curve[cut][0],
            "lesion_f1": curve[cut][1],
            "l2": args.l2,
        },
    }
    bundle.version_id = new_version_id()
    save_checkpoint(bundle, args.output)
    sys.stdout.write(
        json.dumps({"cut": cut, "dice": curve[cut][0], "lesion_f1": curve[cut][1]})
        + f"\nwrote {args.output} ({bundle.version_id})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
