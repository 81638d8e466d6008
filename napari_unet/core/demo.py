"""The main job without a display: segment the sample brain and write every result."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from .inference import Predictor
from .io import read_image, write_labels_nifti, write_probability_nifti
from .metrics import evaluate_case
from .models import get_model
from .pipeline import binarize
from .sample import SAMPLE_LESION, SAMPLE_T1

log = logging.getLogger(__name__)


def run_demo(output: Path, device: str = "auto") -> int:
    """Segment the bundled sample, compare with its truth, write NIfTI results to ``output``."""
    output = Path(output)
    started = time.perf_counter()
    bundle = get_model(None)
    predictor = Predictor(bundle, device=device)
    image = read_image(SAMPLE_T1)
    truth = read_image(SAMPLE_LESION).data > 0.5
    prob = predictor.predict_volume(image.data, axis=0, spacing=image.geometry.display_spacing)
    mask = binarize(prob, bundle, spacing=image.geometry.display_spacing)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = output / stamp
    mask_path = write_labels_nifti(mask, image.geometry, run_dir / "sample_t1_lesion.nii.gz")
    prob_path = write_probability_nifti(prob, image.geometry, run_dir / "sample_t1_prob.nii.gz")
    scores = evaluate_case("sample", mask, truth, image.geometry.display_spacing)
    seconds = time.perf_counter() - started
    out = sys.stdout
    out.write(
        f"napari-unet demo (headless): model {bundle.version_id} on {predictor.device}\n"
        f"  input        {SAMPLE_T1}\n"
        f"  lesion       {scores.pred_ml:.2f} mL predicted, {scores.truth_ml:.2f} mL true\n"
        f"  Dice         {scores.dice:.3f}   lesion-wise F1 {scores.lesion_f1:.3f}   "
        f"HD95 {scores.hd95_mm:.1f} mm\n"
        f"  time         {seconds:.1f} s\n"
        f"  wrote        {mask_path.resolve()}\n"
        f"               {prob_path.resolve()}\n"
    )
    return 0
