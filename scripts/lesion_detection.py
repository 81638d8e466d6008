"""Which true lesions a model finds, by size and by how visible they are in the image.

For every 26-connected true lesion of a dataset's validation cases: its volume, its
contrast-to-noise ratio (mean intensity of a shell 1-3 voxels outside it minus the
lesion's mean, over the shell's standard deviation), and whether the prediction touches
it (the lesion-wise F1 rule). Predicted components that touch no lesion are counted as
false positives by size. Prints two tables and writes JSON::

    python scripts/lesion_detection.py --data runs/synth_val50 --pred out/eval_val50/pred \\
        --json docs/models/lesion_detection_val50.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

VOLUME_BINS_ML = (0.0, 0.5, 2.0, 10.0, float("inf"))
CNR_BINS = (-float("inf"), 0.5, 1.0, 2.0, float("inf"))
STRUCTURE = np.ones((3, 3, 3), bool)


def _bin_label(edges: tuple[float, ...], index: int, unit: str) -> str:
    low, high = edges[index], edges[index + 1]
    if np.isinf(low):
        return f"< {high:g}{unit}"
    if np.isinf(high):
        return f">= {low:g}{unit}"
    return f"{low:g}-{high:g}{unit}"


def measure_case(image: np.ndarray, truth: np.ndarray, pred: np.ndarray, voxel_ml: float):
    """Per true lesion: volume, CNR, found; per false-positive component: volume."""
    labels, count = ndimage.label(truth, structure=STRUCTURE)
    lesions = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        grown = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in box)
        lesion = labels[grown] == index
        shell = ndimage.binary_dilation(lesion, iterations=3) & ~ndimage.binary_dilation(lesion)
        shell &= ~truth[grown]
        region = image[grown]
        spread = float(region[shell].std()) if shell.any() else 0.0
        contrast = float(region[shell].mean() - region[lesion].mean()) if shell.any() else 0.0
        lesions.append(
            {
                "volume_ml": float(lesion.sum()) * voxel_ml,
                "cnr": contrast / spread if spread > 0 else 0.0,
                "found": bool(pred[grown][lesion].any()),
            }
        )
    pred_labels, _ = ndimage.label(pred, structure=STRUCTURE)
    touching = set(np.unique(pred_labels[truth & pred]).tolist())
    sizes = np.bincount(pred_labels.ravel())
    false_positives = [
        float(sizes[i]) * voxel_ml for i in range(1, len(sizes)) if i not in touching
    ]
    return lesions, false_positives


def _table(lesions: list[dict], key: str, edges: tuple[float, ...], unit: str) -> list[dict]:
    rows = []
    for index in range(len(edges) - 1):
        inside = [les for les in lesions if edges[index] <= les[key] < edges[index + 1]]
        found = sum(les["found"] for les in inside)
        rows.append(
            {
                "bin": _bin_label(edges, index, unit),
                "lesions": len(inside),
                "found": found,
                "rate": found / len(inside) if inside else float("nan"),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="dataset with imagesTs/ and labelsTs/")
    parser.add_argument("--pred", required=True, help="folder of predicted masks")
    parser.add_argument("--json", help="write the per-lesion records and tables here")
    args = parser.parse_args()

    from napari_unet.core.io import check_same_grid, read_image

    data, pred_dir = Path(args.data), Path(args.pred)
    lesions, false_positives, cases = [], [], 0
    for truth_path in sorted((data / "labelsTs").glob("*.nii.gz")):
        case = truth_path.name.removesuffix(".nii.gz")
        pred_paths = sorted(pred_dir.glob(f"{case}*.nii*"))
        if not pred_paths:
            sys.stderr.write(f"error: {pred_dir} has no prediction for {case}\n")
            return 2
        image = read_image(data / "imagesTs" / f"{case}_0000.nii.gz")
        truth, pred = read_image(truth_path), read_image(pred_paths[0])
        check_same_grid(pred, truth, "refusing to compare")
        voxel_ml = float(np.prod(truth.geometry.display_spacing)) / 1000.0
        case_lesions, case_fp = measure_case(
            image.data.astype(np.float32), truth.data > 0.5, pred.data > 0.5, voxel_ml
        )
        for lesion in case_lesions:
            lesion["case"] = case
        lesions += case_lesions
        false_positives += case_fp
        cases += 1
    by_volume = _table(lesions, "volume_ml", VOLUME_BINS_ML, " mL")
    by_cnr = _table(lesions, "cnr", CNR_BINS, "")
    for title, rows in (("true lesion volume", by_volume), ("contrast-to-noise", by_cnr)):
        sys.stdout.write(f"\n{title:20s} {'lesions':>8s} {'found':>6s} {'rate':>6s}\n")
        for row in rows:
            sys.stdout.write(
                f"{row['bin']:20s} {row['lesions']:8d} {row['found']:6d} {row['rate']:6.1%}\n"
            )
    fp = np.asarray(false_positives)
    fp_summary = {
        "components": int(len(fp)),
        "per_case": len(fp) / max(cases, 1),
        "total_ml_per_case": float(fp.sum()) / max(cases, 1),
        "under_0.1_ml": int((fp < 0.1).sum()),
        "0.1_to_1_ml": int(((fp >= 0.1) & (fp < 1)).sum()),
        "over_1_ml": int((fp >= 1).sum()),
    }
    sys.stdout.write(
        f"\nfalse-positive components: {fp_summary['components']} in {cases} cases "
        f"({fp_summary['total_ml_per_case']:.2f} mL per case; "
        f"< 0.1 mL {fp_summary['under_0.1_ml']}, "
        f"0.1-1 mL {fp_summary['0.1_to_1_ml']}, > 1 mL {fp_summary['over_1_ml']})\n"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "data": args.data,
                    "pred": args.pred,
                    "cases": cases,
                    "by_volume": by_volume,
                    "by_cnr": by_cnr,
                    "false_positives": fp_summary,
                    "lesions": lesions,
                },
                indent=1,
            )
        )
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
