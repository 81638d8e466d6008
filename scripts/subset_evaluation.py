"""Restrict an ``evaluate --json`` result to the cases of a truth folder, re-summarized.

    python scripts/subset_evaluation.py out/val50_shipped/val_metrics.json \\
        --truth runs/synth_val40/labelsTs --json out/val50_shipped/val40_metrics.json

Used for the 40 validation brains that no training run selected a checkpoint on (the
first ten of runs/synth_val50 are the fixed set the runs validated on).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("evaluation", help="JSON written by napari-unet evaluate --json")
    parser.add_argument("--truth", required=True, help="folder whose masks name the cases kept")
    parser.add_argument("--json", required=True, help="write the restricted evaluation here")
    args = parser.parse_args()

    from napari_unet.core.io import case_name
    from napari_unet.core.metrics import CaseMetrics, summarize

    wanted = {case_name(p) for p in Path(args.truth).glob("*.nii*")}
    cases = [
        c for c in json.loads(Path(args.evaluation).read_text())["cases"] if c["case"] in wanted
    ]
    missing = wanted - {c["case"] for c in cases}
    if missing:
        sys.stderr.write(f"error: {args.evaluation} has no result for {sorted(missing)[:5]}\n")
        return 2
    summary = summarize([CaseMetrics(**c) for c in cases])
    Path(args.json).write_text(json.dumps({"cases": cases, "summary": summary}, indent=2))
    sys.stdout.write(
        f"{len(cases)} cases: Dice {summary['mean_dice']:.4f} "
        f"({summary['dice_ci95'][0]:.3f}-{summary['dice_ci95'][1]:.3f}), lesion F1 "
        f"{summary['mean_lesion_f1']:.4f} "
        f"({summary['lesion_f1_ci95'][0]:.3f}-{summary['lesion_f1_ci95'][1]:.3f})\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
