"""Features of predicted lesion candidates (3D components), for a learned false-positive filter.

Feasibility study (session 11): predicts cases with a model, labels ``prob >= threshold``
once, and writes one row per component: shape, position and confidence features, and
whether it touches a true lesion. ``--fit`` then fits a logistic regression on the training
rows and scores the held-out rows::

    python scripts/component_features.py --model lesion-t1 --data runs/synth64 --split train \\
        --cases 32 --output out/components_train.npz
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy import ndimage

STRUCTURE = np.ones((3, 3, 3), bool)
POSITION_FEATURES = ("centroid_0", "centroid_1", "centroid_2", "edge_distance_mm")


def component_rows(prob, truth_labels, spacing, threshold=0.5):
    """The lesion filter's measures plus position, per candidate, and how each meets the truth."""
    from napari_unet.core.lesion_filter import component_features

    truth = truth_labels > 0
    labels, count = ndimage.label(prob >= threshold, structure=STRUCTURE)
    measures = component_features(labels, prob, spacing)
    rows, touches, sizes, overlaps, pairs = [], [], [], [], []
    spacing = np.asarray(spacing, float)
    shape = np.asarray(prob.shape)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        inside = labels[box] == index
        lo = np.array([s.start for s in box])
        hi = np.array([s.stop for s in box])
        centre = (lo + hi) / 2 / shape
        edge = float(np.min(np.minimum(lo, shape - hi) * spacing))
        overlap = int(truth[box][inside].sum())
        pairs += [(index - 1, int(t)) for t in np.unique(truth_labels[box][inside]) if t > 0]
        rows.append([*measures[index - 1], *centre, edge])
        touches.append(overlap > 0)
        sizes.append(int(inside.sum()))
        overlaps.append(overlap)
    return rows, touches, sizes, overlaps, pairs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lesion-t1")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    import torch

    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.lesion_filter import FEATURES
    from napari_unet.core.metrics import _components
    from napari_unet.core.models import get_model
    from napari_unet.core.training.datasets import find_cases

    features = (*FEATURES, *POSITION_FEATURES)
    torch.set_num_threads(2)
    bundle = get_model(args.model)
    predictor = Predictor(bundle, batch_size=16)
    cases = [c for c in find_cases(args.data) if c.split == args.split]
    cases = cases[args.first : args.first + args.cases]
    table = {"x": [], "y": [], "case": [], "size": [], "overlap": [], "pairs": []}
    per_case = []
    for number, case in enumerate(cases):
        image = read_image(case.images[0])
        truth = read_image(case.mask).data > 0.5
        prob = predictor.predict_volume(image.data, axis=0)
        truth_labels, n_truth = _components(truth)
        rows, touches, sizes, overlaps, pairs = component_rows(
            prob, truth_labels, image.geometry.display_spacing, bundle.threshold
        )
        offset = len(table["y"])
        table["pairs"] += [(offset + row, number, label) for row, label in pairs]
        table["x"] += rows
        table["y"] += touches
        table["case"] += [number] * len(rows)
        table["size"] += sizes
        table["overlap"] += overlaps
        per_case.append((int(truth.sum()), n_truth))
        sys.stdout.write(f"{case.case}: {len(rows)} components, {sum(touches)} touch a lesion\n")
    np.savez(
        args.output,
        x=np.asarray(table["x"], np.float64).reshape(-1, len(features)),
        y=np.asarray(table["y"], bool),
        case=np.asarray(table["case"]),
        size=np.asarray(table["size"]),
        overlap=np.asarray(table["overlap"]),
        pairs=np.asarray(table["pairs"], np.int64).reshape(-1, 3),
        truth_voxels=np.asarray([t for t, _ in per_case]),
        truth_lesions=np.asarray([n for _, n in per_case]),
        names=np.asarray([c.case for c in cases]),
        features=np.asarray(features),
    )
    sys.stdout.write(f"wrote {args.output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
