"""Is the fast inference path (fused ops, channels-last, bf16 where native) as accurate?

Segments every validation case of a dataset twice, with the optimized and with the
plain path, and compares mean Dice and lesion F1 to three decimals (the rule in
docs/performance.md: bf16 stays on only where Dice is unchanged to 3 decimals)::

    python benchmarks/precision_check.py --data runs/synth_v2 --json docs/precision_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="dataset with validation cases")
    parser.add_argument("--model", default=None, help="checkpoint or bundled name")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    import torch

    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.metrics import dice, lesion_f1
    from napari_unet.core.models import get_model
    from napari_unet.core.training.datasets import find_cases

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    paths = {
        "optimized": Predictor(bundle),
        "plain": Predictor(bundle, precision="fp32", channels_last=False, fused=False),
    }
    cases = [c for c in find_cases(args.data) if c.split == "val"]
    scores = {name: {"dice": [], "lesion_f1": [], "seconds": 0.0} for name in paths}
    max_abs_diff = 0.0
    for case in cases:
        loaded = read_image(case.images[0])
        image, image_spacing = loaded.data, loaded.geometry.display_spacing
        truth = read_image(case.mask).data > 0.5
        probs = {}
        for name, predictor in paths.items():
            start = time.perf_counter()
            probs[name] = predictor.predict_volume(image, axis=0)
            scores[name]["seconds"] += time.perf_counter() - start
            mask = bundle.postprocess(
                (probs[name] >= bundle.threshold).astype(np.uint8),
                image_spacing,
                probability=probs[name],
            )
            scores[name]["dice"].append(dice(mask > 0, truth))
            scores[name]["lesion_f1"].append(lesion_f1(mask > 0, truth))
        max_abs_diff = max(max_abs_diff, float(np.abs(probs["optimized"] - probs["plain"]).max()))
    summary = {
        name: {
            "path": f"{p.precision}, "
            + ("channels-last" if p.memory_format == torch.channels_last else "NCHW")
            + (", fused" if p.fused else ""),
            "mean_dice": float(np.mean(scores[name]["dice"])),
            "mean_lesion_f1": float(np.mean(scores[name]["lesion_f1"])),
            "seconds": scores[name]["seconds"],
        }
        for name, p in paths.items()
    }
    same = round(summary["optimized"]["mean_dice"], 3) == round(summary["plain"]["mean_dice"], 3)
    result = {
        "model": bundle.version_id,
        "cases": len(cases),
        **summary,
        "max_abs_probability_difference": max_abs_diff,
        "dice_unchanged_to_3_decimals": same,
    }
    sys.stdout.write(f"{'path':28s} {'mean Dice':>10s} {'lesion F1':>10s} {'seconds':>8s}\n")
    for name in paths:
        s = summary[name]
        sys.stdout.write(
            f"{s['path']:28s} {s['mean_dice']:10.4f} {s['mean_lesion_f1']:10.4f} "
            f"{s['seconds']:8.1f}\n"
        )
    sys.stdout.write(
        f"max |p_opt - p_plain| = {max_abs_diff:.4f}; Dice unchanged to 3 decimals: {same}\n"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
