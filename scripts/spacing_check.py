"""The sample brain on other pixel grids: segmented on its own pixels, and resampled.

The bundled models were trained on 1 mm pixels. This puts the sample brain and its true
mask on in-plane grids of other spacings (slices stay 1 mm apart), segments each with
the predictor on the scan's own pixels (``resample=False``) and with the default
in-plane resampling to the model's spacing, and scores both against the mask on that
grid with the model's full post-processing. ``--slice-mm`` also makes thick slices (each
the mean of that many 1 mm slices, with its mask at half coverage) and scores the model on
them against its 1 mm answer averaged into the same slices: slices are not resampled::

    python scripts/spacing_check.py --spacing 0.5 0.7 1.0 1.5 2.0 --slice-mm 2 3 5 \
        --json docs/spacing_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=float, nargs="+", default=[0.5, 0.7, 1.0, 1.5, 2.0])
    parser.add_argument("--slice-mm", type=int, nargs="*", default=[], help="thick slices")
    parser.add_argument("--clicks", type=int, default=0, help="simulated clicks per slice")
    parser.add_argument(
        "--click-data",
        help="run the clicks on these brains (an nnU-Net raw folder: imagesTs/, labelsTs/) "
        "instead of the sample brain",
    )
    parser.add_argument("--cases", type=int, default=20, help="brains of --click-data")
    parser.add_argument("--model", default=None, help="bundled name or checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.metrics import evaluate_case
    from napari_unet.core.models import get_model
    from napari_unet.core.pipeline import binarize
    from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1
    from napari_unet.core.spacing import resample_inplane, resampled_shape

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    t1 = read_image(SAMPLE_T1)
    truth = read_image(SAMPLE_LESION).data > 0
    base = t1.geometry.display_spacing
    predictors = {
        "own pixels": Predictor(bundle, device="cpu", resample=False),
        "resampled": Predictor(bundle, device="cpu"),
    }
    rows = []
    for pixel_mm in args.spacing:
        shape = resampled_shape(t1.data.shape[1:], base[1:], pixel_mm) or t1.data.shape[1:]
        image = resample_inplane(t1.data, shape)
        mask = resample_inplane(truth, shape) >= 0.5
        rows_mm = base[1] * t1.data.shape[1] / shape[0]
        cols_mm = base[2] * t1.data.shape[2] / shape[1]
        spacing = (base[0], rows_mm, cols_mm)
        row = {"pixel_mm": pixel_mm, "grid": list(shape)}
        for name, predictor in predictors.items():
            start = time.perf_counter()
            prob = predictor.predict_volume(image, spacing=spacing)
            seconds = time.perf_counter() - start
            scores = evaluate_case("sample", binarize(prob, bundle, spacing=spacing), mask, spacing)
            row[name] = {
                "dice": scores.dice,
                "lesion_f1": scores.lesion_f1,
                "pred_ml": scores.pred_ml,
                "truth_ml": scores.truth_ml,
                "seconds": seconds,
            }
        rows.append(row)
    out = sys.stdout
    out.write(f"model {bundle.version_id}, trained at {bundle.input_spacing_mm} mm pixels\n")
    out.write(
        f"{'pixel':>6s} {'grid':>10s} | {'own pixels: Dice':>16s} {'F1':>5s} {'mL':>6s} {'s':>5s}"
        f" | {'resampled: Dice':>15s} {'F1':>5s} {'mL':>6s} {'s':>5s} | {'true mL':>7s}\n"
    )
    for row in rows:
        own, res = row["own pixels"], row["resampled"]
        out.write(
            f"{row['pixel_mm']:5.2f}  {row['grid'][0]:4d}x{row['grid'][1]:<4d}"
            f" | {own['dice']:16.3f} {own['lesion_f1']:5.2f} {own['pred_ml']:6.1f} "
            f"{own['seconds']:5.1f} | {res['dice']:15.3f} {res['lesion_f1']:5.2f} "
            f"{res['pred_ml']:6.1f} {res['seconds']:5.1f} | {own['truth_ml']:7.1f}\n"
        )
    thick_rows = []
    if args.slice_mm:
        full = predictors["resampled"].predict_volume(t1.data, spacing=base)
        for k in args.slice_mm:
            n = t1.data.shape[0] // k

            def thick(volume, k=k, n=n):
                return volume[: n * k].reshape(n, k, *volume.shape[1:]).mean(axis=1)

            spacing = (base[0] * k, base[1], base[2])
            mask = thick(truth.astype(np.float32)) >= 0.5
            prob = predictors["resampled"].predict_volume(thick(t1.data), spacing=spacing)
            own = evaluate_case("thick", binarize(prob, bundle, spacing=spacing), mask, spacing)
            adjacent = predictors["own pixels"].predict_volume(thick(t1.data), spacing=spacing)
            one_slice = evaluate_case(
                "thick", binarize(adjacent, bundle, spacing=spacing), mask, spacing
            )
            averaged = binarize(thick(full), bundle, spacing=spacing)
            reference = evaluate_case("thick", averaged, mask, spacing)
            thick_rows.append(
                {
                    "slice_mm": k,
                    "dice": own.dice,
                    "neighbours_one_slice_away_dice": one_slice.dice,
                    "reference_dice": reference.dice,
                }
            )
        out.write(
            f"\n{'slices':>7s} {'neighbours at 1 mm: Dice':>25s} {'one slice away':>15s}"
            f" {'1 mm answer averaged in':>24s}\n"
        )
        for row in thick_rows:
            out.write(
                f"{row['slice_mm']:5d}mm {row['dice']:25.3f} "
                f"{row['neighbours_one_slice_away_dice']:15.3f} {row['reference_dice']:24.3f}\n"
            )
    click_rows = []
    if args.clicks:
        brains = [(t1.data, truth, base)]
        if args.click_data:
            brains = list(_brains(args.click_data, args.cases))
        click_rows = click_check(args.spacing, args.clicks, brains)
        out.write(
            f"\n{'pixel':>6s} {'clicks':>6s} {'own pixels: Dice':>17s} {'resampled: Dice':>16s}\n"
        )
        for row in click_rows:
            pairs = zip(row["own pixels"], row["resampled"], strict=True)
            paired = row.get("paired_by_brain") or [None] * len(row["resampled"])
            for n, (own, res) in enumerate(pairs, start=1):
                diff = paired[n - 1]
                text = (
                    ""
                    if diff is None
                    else (
                        f"  paired by brain {diff['difference']:+.3f} "
                        f"({diff['ci_low']:+.3f} to {diff['ci_high']:+.3f})"
                    )
                )
                out.write(f"{row['pixel_mm']:5.2f}  {n:6d} {own:17.3f} {res:16.3f}{text}\n")
    if args.json:
        with open(args.json, "w") as handle:
            result = {"model": bundle.version_id, "rows": rows, "thick_slices": thick_rows}
            result["clicks"] = click_rows
            result["click_data"] = args.click_data or "sample brain"
            json.dump(result, handle, indent=2)
        out.write(f"wrote {args.json}\n")
    return 0


def _brains(folder: str, cases: int):
    """(image, truth, spacing) of the first ``cases`` test brains of an nnU-Net raw folder."""
    from pathlib import Path

    from napari_unet.core.io import read_image

    images = sorted(Path(folder, "imagesTs").glob("*_0000.nii.gz"))[:cases]
    for image_path in images:
        label = Path(folder, "labelsTs", image_path.name.replace("_0000.nii.gz", ".nii.gz"))
        image = read_image(image_path)
        yield image.data, read_image(label).data > 0, image.geometry.display_spacing


def click_check(pixels: list[float], clicks: int, brains: list) -> list[dict]:
    """Mean slice Dice after each of ``clicks`` simulated clicks, per grid and engine,
    over every lesion slice of ``brains`` ((image, truth, spacing) at 1 mm pixels)."""
    import numpy as np

    from napari_unet.core.click_eval import lesion_slices
    from napari_unet.core.click_maps import first_click, next_click
    from napari_unet.core.click_spacing import ResampledClicks
    from napari_unet.core.clicks import Click
    from napari_unet.core.guided import GuidedClickEngine
    from napari_unet.core.inference import Predictor
    from napari_unet.core.metrics import dice
    from napari_unet.core.models import CLICK_MODEL, get_model
    from napari_unet.core.spacing import resample_inplane, resampled_shape
    from napari_unet.core.statistics import paired_difference

    bundle = get_model(CLICK_MODEL)
    predictors = {
        "own pixels": Predictor(bundle, device="cpu", resample=False),
        "resampled": Predictor(bundle, device="cpu"),
    }
    rows = []
    for pixel_mm in pixels:
        sums = {name: np.zeros(clicks) for name in predictors}
        per_brain = {name: [] for name in predictors}
        tasks_seen = 0
        for volume, truth, base in brains:
            shape = resampled_shape(truth.shape[1:], base[1:], pixel_mm) or truth.shape[1:]
            image = resample_inplane(volume, shape)
            mask = resample_inplane(truth, shape) >= 0.5
            spacing = (
                base[0],
                base[1] * truth.shape[1] / shape[0],
                base[2] * truth.shape[2] / shape[1],
            )
            engines = {
                "own pixels": GuidedClickEngine(predictors["own pixels"], image),
                "resampled": ResampledClicks(
                    GuidedClickEngine, predictors["resampled"], image, spacing=spacing
                ),
            }
            tasks = lesion_slices(mask)
            if not tasks:
                continue
            tasks_seen += len(tasks)
            for name, engine in engines.items():
                brain = np.zeros(clicks)
                for task in tasks:
                    target = mask[task.index]
                    drawn = np.zeros_like(target)
                    point = first_click(target)
                    for n in range(clicks):
                        if point is not None:
                            click = Click(0, task.index, *point)
                            drawn = engine.apply(click, drawn, bundle.threshold).astype(bool)
                            point = next_click(drawn, target)
                        brain[n] += dice(drawn, target)
                sums[name] += brain
                per_brain[name].append(list(brain / len(tasks)))
        row = {"pixel_mm": pixel_mm, "slices": tasks_seen, "brains": len(per_brain["resampled"])}
        row |= {name: list(total / max(1, tasks_seen)) for name, total in sums.items()}
        row["per_brain"] = per_brain
        if len(per_brain["resampled"]) >= 2:  # paired by brain: resampled - own pixels
            row["paired_by_brain"] = [
                asdict(
                    paired_difference(
                        f"dice@{n + 1}",
                        [b[n] for b in per_brain["own pixels"]],
                        [b[n] for b in per_brain["resampled"]],
                    )
                )
                for n in range(clicks)
            ]
        rows.append(row)
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
