"""Paths of the bundled sample brain (see napari_unet/data/LICENSE_sample.txt)."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SAMPLE_T1 = DATA_DIR / "sample_t1.nii.gz"
SAMPLE_LESION = DATA_DIR / "sample_lesion.nii.gz"
SAMPLE_LICENCE = DATA_DIR / "LICENSE_sample.txt"
