"""Where a model's misses lie inside true lesions: probability, intensity and slices.

For each named validation case, predicts the volume with the model's own post-processing
and reports, over the true lesion voxels it misses: their probability (under 0.01, 0.01 to
0.1, 0.1 or more), their median intensity against the found lesion voxels and a 3-voxel
ring of tissue around the lesion, and the share that lies in axial slices where none of
the lesion was found::

    python scripts/missed_voxels_check.py --data runs/synth_fresh40 \\
        --case synthval_0069 --case synthval_0078 --json out/missed.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="lesion-t1")
    parser.add_argument("--data", required=True, action="append", help="dataset folder(s)")
    parser.add_argument("--case", required=True, action="append", help="validation case name")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here (new file)")
    args = parser.parse_args()
    if args.json is not None and args.json.exists():
        parser.error(f"{args.json} exists; choose a new file (nothing is overwritten)")

    import torch

    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.models import get_model
    from napari_unet.core.pipeline import binarize

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    predictor = Predictor(bundle, batch_size=16)
    rows = []
    for case in args.case:
        found_in = [d for d in args.data if (Path(d) / "labelsTs" / f"{case}.nii.gz").exists()]
        if not found_in:
            parser.error(f"case {case} is in none of {args.data} (looked in labelsTs)")
        folder = Path(found_in[0])
        image = read_image(folder / "imagesTs" / f"{case}_0000.nii.gz")
        truth = read_image(folder / "labelsTs" / f"{case}.nii.gz").data > 0.5
        prob = predictor.predict_volume(image.data, axis=0)
        mask = binarize(prob, bundle, spacing=image.geometry.display_spacing) > 0
        found, missed = truth & mask, truth & ~mask
        if not missed.any():
            rows.append({"case": case, "truth_voxels": int(truth.sum()), "missed_share": 0.0})
            continue
        p_missed = prob[missed]
        ring = ndimage.binary_dilation(truth, iterations=3) & ~truth
        slices_with_found = found.any(axis=(1, 2))
        row = {
            "case": case,
            "truth_voxels": int(truth.sum()),
            "missed_share": float(missed.sum() / truth.sum()),
            "missed_p_below_0.01": float((p_missed < 0.01).mean()),
            "missed_p_0.01_to_0.1": float(((p_missed >= 0.01) & (p_missed < 0.1)).mean()),
            "missed_p_0.1_or_more": float((p_missed >= 0.1).mean()),
            "intensity_found": float(np.median(image.data[found])) if found.any() else None,
            "intensity_missed": float(np.median(image.data[missed])),
            "intensity_ring": float(np.median(image.data[ring])),
            "missed_in_slices_with_nothing_found": float(
                missed[~slices_with_found].sum() / missed.sum()
            ),
        }
        rows.append(row)
        sys.stdout.write(
            f"{case}: {100 * row['missed_share']:.0f} % of {row['truth_voxels']} missed; "
            f"p < 0.01 {100 * row['missed_p_below_0.01']:.0f} %, "
            f"0.01-0.1 {100 * row['missed_p_0.01_to_0.1']:.0f} %, "
            f">= 0.1 {100 * row['missed_p_0.1_or_more']:.0f} %; "
            f"median intensity found {row['intensity_found'] or float('nan'):.0f}, missed "
            f"{row['intensity_missed']:.0f}, ring {row['intensity_ring']:.0f}; "
            f"{100 * row['missed_in_slices_with_nothing_found']:.0f} % in slices with "
            "nothing found\n"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": bundle.version_id, "cases": rows}, indent=1))
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
