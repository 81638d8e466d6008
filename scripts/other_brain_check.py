"""Check a lesion model on real brains that no training case came from.

Two brains, neither one a training anatomy (those are the MNI152 2009 templates):

* ``anatomical``: nibabel's ``anatomical.nii``, a real subject's T1 (2 mm, 33x41x25, a
  partial field of view), up-sampled to 1 mm.
* ``pydeface``: pydeface's ``mean_reg2mean.nii.gz`` (MIT), a full 1 mm head with face and
  neck (176x256x256, in its own space, not MNI), the mean of registered subjects' heads
  from another lab and scanner. Install it with ``pip install --no-deps pydeface``.

Synthetic chronic infarcts are placed in white matter found from intensities (no tissue
maps exist for these brains), and each model is scored with its own post-processing.
Several models share one lesion set, so their figures compare like with like.

``--downsample K`` scores each lesioned brain on a grid K times coarser (K×K×K blocks
averaged; the mask where half a block is lesion), as a scanner with that voxel size would
record it, once segmented as users get it (slices resampled to the model's spacing) and
once on the coarse grid's own voxels. For ``anatomical``, ``--downsample 2`` is its
native 2 mm grid.

Usage: ``python scripts/other_brain_check.py [--brain anatomical --brain pydeface]
[--seeds 5] [--first-seed 0] [--model M ...] [--downsample K] [--output out/other_brain]``
"""

from __future__ import annotations

import argparse
import importlib.util
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


def load_anatomical() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nibabel's test subject at 1 mm, and the white-matter voxels lesions may centre on."""
    path = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"
    image = nib.load(path)
    data = np.asarray(image.dataobj, dtype=np.float32)
    upsampled = np.clip(ndimage.zoom(data, 2.0, order=3), 0, None)
    affine = image.affine @ np.diag([0.5, 0.5, 0.5, 1.0])
    smooth = ndimage.gaussian_filter(upsampled, 1.0)
    head = smooth > 0.2 * np.percentile(smooth, 99)
    depth = ndimage.distance_transform_edt(head)
    white = (smooth > np.percentile(smooth[head], 75)) & (depth > 10)
    return upsampled, affine, white


def load_pydeface() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pydeface's mean head, and white matter: bright, deep, above the head's centre."""
    spec = importlib.util.find_spec("pydeface")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the pydeface brain needs: pip install --no-deps pydeface")
    path = Path(spec.submodule_search_locations[0]) / "data" / "mean_reg2mean.nii.gz"
    image = nib.as_closest_canonical(nib.load(path))
    data = np.clip(np.asarray(image.dataobj, dtype=np.float32), 0, None)
    smooth = ndimage.gaussian_filter(data, 1.0)
    head = ndimage.binary_fill_holes(smooth > 0.2 * np.percentile(smooth, 99))
    depth = ndimage.distance_transform_edt(head)
    deep = depth > 25
    above = np.zeros_like(head)
    above[..., int(np.argwhere(head)[:, 2].mean()) + 15 :] = True
    region = deep & above
    white = region & (smooth > np.percentile(smooth[region], 60))
    return data, image.affine, white


BRAINS = {"anatomical": load_anatomical, "pydeface": load_pydeface}


def coarse(volume: np.ndarray, k: int) -> np.ndarray:
    """``volume`` averaged over k×k×k blocks (cropped to whole blocks); itself for k = 1."""
    if k == 1:
        return volume
    shape = [n // k for n in volume.shape]
    cropped = volume[: shape[0] * k, : shape[1] * k, : shape[2] * k]
    return cropped.reshape(shape[0], k, shape[1], k, shape[2], k).mean(axis=(1, 3, 5))


def tissue_reference(image: np.ndarray) -> tuple[np.ndarray, float]:
    """The head mask lesions are cut to, and the CSF-like intensity they blend towards.

    Computed once per brain (a smoothing and a distance transform of the whole volume),
    not once per lesion.
    """
    smooth = ndimage.gaussian_filter(image, 1.0)
    head = smooth > 0.2 * np.percentile(smooth, 99)
    depth = ndimage.distance_transform_edt(head)
    return head, float(np.percentile(smooth[head & (depth > 8)], 5))


def add_lesion(
    image: np.ndarray,
    white: np.ndarray,
    reference: tuple[np.ndarray, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """A hypointense, partial-volume blob (4-10 mm radius) centred in white matter."""
    head, csf = reference
    centres = np.argwhere(white)
    centre = centres[rng.integers(len(centres))]
    radii = rng.uniform(4, 10) * rng.uniform(0.7, 1.3, 3)
    grid = np.indices(image.shape).transpose(1, 2, 3, 0) - centre
    noise = ndimage.gaussian_filter(rng.standard_normal(image.shape), 2.0)
    distance = np.sqrt(((grid / radii) ** 2).sum(-1)) + 0.3 * noise / noise.std()
    mask = (distance < 1.0) & head
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 0.8)
    strength = rng.uniform(0.7, 1.0)
    lesioned = image * (1 - soft * strength) + csf * soft * strength
    return lesioned.astype(np.float32), (soft > 0.5).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--brain", action="append", choices=sorted(BRAINS))
    parser.add_argument("--seeds", type=int, default=5, help="lesions per brain")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first lesion")
    parser.add_argument("--output", default="out/other_brain")
    parser.add_argument("--downsample", type=int, default=1, help="score on a K-times coarser grid")
    parser.add_argument(
        "--model", action="append", help="checkpoint or bundled name (default: the default model)"
    )
    args = parser.parse_args()
    brains = args.brain or ["anatomical"]
    models = args.model or [None]
    bundles = [get_model(name) for name in models]
    pairs = list(zip(models, bundles, strict=True))
    runs = [(str(name), bundle, Predictor(bundle)) for name, bundle in pairs]
    if args.downsample > 1:  # also on the coarse grid's own voxels, as before session 29
        runs += [
            (f"{name} (own voxels)", bundle, Predictor(bundle, resample=False))
            for name, bundle in pairs
        ]
    results: dict[str, dict[str, list]] = {run[0]: {b: [] for b in brains} for run in runs}
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for brain_name in brains:
        brain, affine, white = BRAINS[brain_name]()
        k = args.downsample
        geometry = ImageGeometry.from_affine(
            affine @ np.diag([k, k, k, 1.0]), coarse(brain, k).shape
        )
        spacing = geometry.display_spacing
        reference = tissue_reference(brain)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            image, truth = add_lesion(brain, white, reference, np.random.default_rng(seed))
            display = geometry.to_display(coarse(image, k))
            display_truth = geometry.to_display(coarse(truth.astype(np.float32), k)) >= 0.5
            for name, bundle, predictor in runs:
                prob = predictor.predict_volume(display, axis=0, spacing=spacing)
                pred = binarize(prob, bundle, spacing=spacing)
                r = evaluate_case(f"{brain_name}_seed{seed}", pred > 0, display_truth, spacing)
                results[name][brain_name].append(r)
                print(
                    f"{str(name)[-40:]:40s} {r.case:20s} dice {r.dice:.3f}  lesion F1 "
                    f"{r.lesion_f1:.3f}  true {r.truth_ml:.2f} mL  predicted {r.pred_ml:.2f} mL",
                    flush=True,
                )
    report = {}
    print(f"\n{'model':40s} {'brain':12s} {'Dice':>6s} {'F1':>6s} {'FP mL':>6s}")
    for name, per_brain in results.items():
        report[name] = {}
        for brain_name, cases in per_brain.items():
            summary = summarize(cases)
            report[name][brain_name] = {"cases": [r.to_dict() for r in cases], "summary": summary}
            print(
                f"{name[-40:]:40s} {brain_name:12s} {summary['mean_dice']:6.3f} "
                f"{summary['mean_lesion_f1']:6.3f} {summary['mean_abs_volume_diff_ml']:6.2f}"
            )
    (out / "other_brain.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
