"""Check the default model on a real brain that no training case came from.

nibabel ships ``anatomical.nii``: a real subject's T1 (2 mm, 33x41x25), unrelated to the
MNI152 templates the training data were built from. We upsample it to 1 mm, place
synthetic chronic infarcts in its white matter (found from intensities: no template maps
exist for this brain), and segment with the default model.

Usage: ``python scripts/other_brain_check.py [--seeds 5] [--output out/other_brain] [--model M]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_unet.core.inference import Predictor
from napari_unet.core.io.geometry import ImageGeometry
from napari_unet.core.metrics import evaluate_case, summarize
from napari_unet.core.models import get_model
from napari_unet.core.pipeline import binarize


def load_brain() -> tuple[np.ndarray, np.ndarray]:
    path = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float32)
    upsampled = ndimage.zoom(data, 2.0, order=3)
    affine = image.affine @ np.diag([0.5, 0.5, 0.5, 1.0])
    return np.clip(upsampled, 0, None), affine


def add_lesion(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    smooth = ndimage.gaussian_filter(image, 1.0)
    head = smooth > 0.2 * np.percentile(smooth, 99)
    depth = ndimage.distance_transform_edt(head)
    white = (smooth > np.percentile(smooth[head], 75)) & (depth > 10)
    centres = np.argwhere(white)
    centre = centres[rng.integers(len(centres))]
    radii = rng.uniform(4, 10) * rng.uniform(0.7, 1.3, 3)
    grid = np.indices(image.shape).transpose(1, 2, 3, 0) - centre
    noise = ndimage.gaussian_filter(rng.standard_normal(image.shape), 2.0)
    distance = np.sqrt(((grid / radii) ** 2).sum(-1)) + 0.3 * noise / noise.std()
    mask = (distance < 1.0) & head
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 0.8)
    csf = float(np.percentile(smooth[head & (depth > 8)], 5))
    strength = rng.uniform(0.7, 1.0)
    lesioned = image * (1 - soft * strength) + csf * soft * strength
    return lesioned.astype(np.float32), (soft > 0.5).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--output", default="out/other_brain")
    parser.add_argument("--model", default=None, help="checkpoint or bundled name (default model)")
    args = parser.parse_args()
    brain, affine = load_brain()
    bundle = get_model(args.model)
    predictor = Predictor(bundle)
    results = []
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        image, truth = add_lesion(brain, rng)
        geometry = ImageGeometry.from_affine(affine, image.shape)
        display = geometry.to_display(image)
        prob = predictor.predict_volume(display, axis=0)
        pred = binarize(prob, bundle)
        results.append(
            evaluate_case(
                f"anatomical_seed{seed}",
                pred > 0,
                geometry.to_display(truth) > 0,
                geometry.display_spacing,
            )
        )
    for r in results:
        print(
            f"{r.case:24s} dice {r.dice:.3f}  lesion F1 {r.lesion_f1:.3f}  "
            f"true {r.truth_ml:.2f} mL  predicted {r.pred_ml:.2f} mL"
        )
    summary = summarize(results)
    print(json.dumps(summary, indent=2))
    (out / "other_brain.json").write_text(
        json.dumps({"cases": [r.to_dict() for r in results], "summary": summary}, indent=2)
    )


if __name__ == "__main__":
    main()
