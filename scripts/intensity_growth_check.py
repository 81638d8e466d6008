"""Screen intensity growth of a model's kept lesions on *training* cases (or score a set).

Predicts the cases once, applies the model's own post-processing, then grows each kept
lesion through connected voxels as dark as it is (``editing.grow_by_intensity``) for each
``--reach`` in mm, and reports mean Dice, lesion F1 and absolute volume difference against
no intensity growth (the model card's pre-registered screen)::

    python scripts/intensity_growth_check.py --data runs/synth64 --cases 16 \\
        --json out/intensity_growth_train16.json

``--split val --write-evaluations OUT`` scores the validation cases instead and writes one
evaluation JSON per setting (``OUT/none.json``, ``OUT/2mm.json`` …) that
``napari-unet compare`` reads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lesion-t1")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--cases", type=int, default=16, help="the first N cases of the split")
    parser.add_argument("--reach", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the summary here (new file)")
    parser.add_argument("--write-evaluations", type=Path, help="a new folder of evaluations")
    args = parser.parse_args()
    for target in (args.json, args.write_evaluations):
        if target is not None and target.exists():
            parser.error(f"{target} exists; choose a new path (nothing is overwritten)")

    import torch

    from napari_unet.core.editing import grow_by_intensity
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.metrics import evaluate_case, summarize
    from napari_unet.core.models import get_model
    from napari_unet.core.pipeline import binarize
    from napari_unet.core.training.datasets import find_cases

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    predictor = Predictor(bundle, batch_size=16)
    cases = [c for c in find_cases(args.data) if c.split == args.split][: args.cases]
    keys = ["none", *(f"{reach:g}mm" for reach in args.reach)]
    results: dict[str, list] = {key: [] for key in keys}
    for done, case in enumerate(cases, start=1):
        image = read_image(case.images[0])
        spacing = image.geometry.display_spacing
        truth = read_image(case.mask).data > 0.5
        prob = predictor.predict_volume(image.data, axis=0)
        kept = binarize(prob, bundle, spacing=spacing)
        for key, reach in zip(keys, [None, *args.reach], strict=True):
            mask = kept if reach is None else grow_by_intensity(kept, image.data, reach, spacing)
            results[key].append(evaluate_case(case.case, mask > 0, truth, spacing))
        sys.stdout.write(f"predicted {done}/{len(cases)} {case.case}\n")
    summary = {key: summarize(rows) for key, rows in results.items()}
    sys.stdout.write(f"{'reach':>8} {'Dice':>7} {'F1':>7} {'mean':>7} {'|dV| mL':>8}\n")
    for key, values in summary.items():
        dice, f1 = values["mean_dice"], values["mean_lesion_f1"]
        sys.stdout.write(
            f"{key:>8} {dice:7.4f} {f1:7.4f} {(dice + f1) / 2:7.4f} "
            f"{values['mean_abs_volume_diff_ml']:8.2f}\n"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": bundle.version_id, "summary": summary}, indent=1))
        sys.stdout.write(f"wrote {args.json}\n")
    if args.write_evaluations is not None:
        args.write_evaluations.mkdir(parents=True)
        for key, rows in results.items():
            payload = {"cases": [row.to_dict() for row in rows], "summary": summary[key]}
            (args.write_evaluations / f"{key}.json").write_text(json.dumps(payload, indent=1))
        sys.stdout.write(f"wrote {len(results)} evaluations to {args.write_evaluations}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
