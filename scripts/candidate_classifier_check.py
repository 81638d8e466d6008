"""Could a second stage tell small true lesions from small false candidates?

Predicts a dataset's cases with a model, labels ``probability >= --threshold`` into
26-connected candidates, measures each (size, axial extent, peak and mean probability,
mean intensity inside and in a 2-voxel ring around it relative to the head's median, its
in-plane size and position) and whether it touches the truth. Then it scores two
classifiers by grouped 5-fold cross-validation (no brain in both the fitting and the
scored fold) and prints their ROC AUC over all candidates and over the thin ones (axial
extent under ``--thin-mm``, the ones the extent rule removes)::

    python scripts/candidate_classifier_check.py --model lesion-t1 --data runs/synth_tune1050 \\
        --split val --json docs/models/candidate_classifier_tune1050.json

Needs scikit-learn (installed by ``scripts/setup_env.sh``); an analysis, not a shipped path.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from scipy import ndimage

FEATURES = (
    "log_voxels",
    "extent_mm",
    "peak_probability",
    "mean_probability",
    "inside_intensity",
    "ring_intensity",
    "contrast",
    "height_px",
    "width_px",
    "z_position",
    "y_position",
    "x_position",
)


def candidate_rows(prob, image, truth, threshold, spacing_z):
    """One feature row and one label (touches the truth) per candidate of one volume."""
    structure = np.ones((3, 3, 3), bool)
    head = image > np.percentile(image, 60)
    median = float(np.median(image[head])) or 1.0
    labels, _ = ndimage.label(prob >= threshold, structure=structure)
    rows, touched = [], []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        padded = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in box)
        inside = labels[padded] == index
        ring = ndimage.binary_dilation(inside, structure, iterations=2) & ~inside
        values = prob[padded][inside]
        inside_mean = float(image[padded][inside].mean()) / median
        ring_mean = float(image[padded][ring].mean()) / median if ring.any() else inside_mean
        centre = [(s.start + s.stop) / 2 / n for s, n in zip(box, image.shape, strict=True)]
        rows.append(
            [
                np.log(inside.sum()),
                (box[0].stop - box[0].start) * spacing_z,
                float(values.max()),
                float(values.mean()),
                inside_mean,
                ring_mean,
                inside_mean - ring_mean,
                box[1].stop - box[1].start,
                box[2].stop - box[2].start,
                *centre,
            ]
        )
        touched.append(bool(truth[padded][inside].any()))
    return rows, touched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lesion-t1")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", choices=("train", "val"), default="val")
    parser.add_argument("--threshold", type=float, default=0.1, help="candidate threshold")
    parser.add_argument("--thin-mm", type=float, default=9.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()

    import torch
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    from napari_unet.core.checkpoint import load_checkpoint
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.models import resolve_model_path
    from napari_unet.core.training.datasets import find_cases

    torch.set_num_threads(args.threads)
    predictor = Predictor(load_checkpoint(resolve_model_path(args.model)), batch_size=16)
    cases = [c for c in find_cases(args.data) if c.split == args.split]
    if not cases:
        parser.error(f"{args.data}: no {args.split} cases")
    features, labels, groups = [], [], []
    for number, case in enumerate(cases):
        image = read_image(case.images[0])
        truth = read_image(case.mask).data > 0.5
        prob = predictor.predict_volume(image.data, axis=0)
        spacing_z = float(image.geometry.display_spacing[0])
        rows, touched = candidate_rows(
            prob, image.data.astype(np.float32), truth, args.threshold, spacing_z
        )
        features += rows
        labels += touched
        groups += [number] * len(rows)
        sys.stdout.write(f"{number + 1}/{len(cases)} {case.case}: {len(rows)} candidates\n")
    x, y, groups = np.asarray(features), np.asarray(labels, int), np.asarray(groups)
    thin = x[:, 1] < args.thin_mm
    subsets = {
        "peak probability": [2],
        "probability, size, extent": [0, 1, 2, 3],
        "all features": list(range(len(FEATURES))),
    }
    results = []
    for name, columns in subsets.items():
        for model in (
            LogisticRegression(max_iter=2000),
            GradientBoostingClassifier(n_estimators=100, max_depth=2, random_state=0),
        ):
            scores = np.zeros(len(y))
            for fit, held in GroupKFold(5).split(x, y, groups):
                model.fit(x[fit][:, columns], y[fit])
                scores[held] = model.predict_proba(x[held][:, columns])[:, 1]
            results.append(
                {
                    "features": name,
                    "classifier": type(model).__name__,
                    "auc_all": float(roc_auc_score(y, scores)),
                    "auc_thin": float(roc_auc_score(y[thin], scores[thin])),
                }
            )
    sys.stdout.write(
        f"{len(y)} candidates at probability >= {args.threshold} in {len(cases)} cases, "
        f"{int(y.sum())} touch a lesion; {int(thin.sum())} are thinner than "
        f"{args.thin_mm:g} mm, {int(y[thin].sum())} of them touch a lesion\n"
    )
    sys.stdout.write(f"{'features':28s}{'classifier':30s}{'AUC all':>9s}{'AUC thin':>10s}\n")
    for row in results:
        sys.stdout.write(
            f"{row['features']:28s}{row['classifier']:30s}"
            f"{row['auc_all']:9.3f}{row['auc_thin']:10.3f}\n"
        )
    if args.json:
        summary = {
            "model": args.model,
            "data": args.data,
            "split": args.split,
            "threshold": args.threshold,
            "candidates": len(y),
            "touching": int(y.sum()),
            "thin": int(thin.sum()),
            "thin_touching": int(y[thin].sum()),
            "features": list(FEATURES),
            "results": results,
        }
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
