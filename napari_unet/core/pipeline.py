"""The headless segmentation pipeline shared by the CLI and the GUI's export."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import ModelBundle
from .inference import Predictor
from .io import LoadedImage, case_name, read_image, write_labels_nifti, write_probability_nifti
from .metrics import lesion_count, volume_ml
from .progress import Progress

log = logging.getLogger(__name__)


@dataclass
class SegmentationResult:
    source: Path
    mask_path: Path
    probability_path: Path | None
    lesion_ml: float
    lesions: int


def binarize(
    prob: np.ndarray,
    bundle: ModelBundle,
    threshold: float | None = None,
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Threshold, then apply the model's declared post-processing (small/thin components)."""
    mask = (prob >= (bundle.threshold if threshold is None else threshold)).astype(np.uint8)
    return bundle.postprocess(mask, spacing, probability=prob)


def segment_image(
    predictor: Predictor,
    image: LoadedImage,
    axis: int = 0,
    progress: Callable[[Progress], None] | None = None,
    mirror: bool = False,
) -> np.ndarray:
    """Lesion probability for a loaded image (display order), slice by slice along ``axis``.

    ``mirror`` averages with the left-right mirrored pass (test-time augmentation). Slices
    are resampled to the model's pixel spacing and the answer back to the image's grid.
    """
    return predictor.predict_volume(
        image.data,
        axis=axis,
        progress=progress,
        mirror=mirror,
        spacing=image.geometry.display_spacing,
    )


def segment_file(
    predictor: Predictor,
    source: str | Path,
    output_dir: str | Path,
    threshold: float | None = None,
    probabilities: bool = False,
    overwrite: bool = False,
    progress: Callable[[Progress], None] | None = None,
    volume: int | None = None,
    mirror: bool = False,
) -> SegmentationResult:
    """Read, segment along the axial display axis, and write ``<name>_lesion.nii.gz``."""
    bundle: ModelBundle = predictor.bundle
    image = read_image(source, volume=volume, all_volumes=bundle.image_channels > 1)
    prob = segment_image(predictor, image, 0, progress, mirror=mirror)
    mask = binarize(prob, bundle, threshold, image.geometry.display_spacing)
    name = case_name(source)
    output_dir = Path(output_dir)
    mask_path = write_labels_nifti(
        mask, image.geometry, output_dir / f"{name}_lesion.nii.gz", overwrite=overwrite
    )
    prob_path = None
    if probabilities:
        prob_path = write_probability_nifti(
            prob, image.geometry, output_dir / f"{name}_prob.nii.gz", overwrite
        )
    return SegmentationResult(
        Path(source),
        mask_path,
        prob_path,
        volume_ml(mask, image.geometry.display_spacing),
        lesion_count(mask),
    )
