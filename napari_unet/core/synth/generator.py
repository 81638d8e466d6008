"""Synthetic chronic-stroke T1 scans: real brains, simulated infarcts, realistic acquisition.

One case = template -> lesions blended toward CSF (or brightened, in the
hyperintense mode) -> random affine + elastic warp of the whole head -> bias
field -> resolution loss -> Rician noise -> gamma/contrast. Everything is
driven by one integer seed, so a case is reproducible from its seed alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage

from . import augment
from .lesions import KINDS, LesionSampler, LesionSpec
from .templates import Template, load_template

Mode = Literal["hypo", "hyper"]
# "standard": the acquisition ranges of the fixed validation split. "wide" adds a stronger
# bias field, blur (p 0.35) and a random monotonic contrast curve (p 0.5), so that a model
# sees T1 contrasts and sharpness beyond the two templates'.
Acquisition = Literal["standard", "wide"]

# Seeds of the fixed validation split: never used for training cases.
VALIDATION_SEED_OFFSET = 900_000


@dataclass
class SyntheticCase:
    image: np.ndarray  # float32, template voxel order (RAS), 1 mm
    label: np.ndarray  # uint8 0/1
    affine: np.ndarray
    seed: int
    template: str
    lesions: list[LesionSpec] = field(default_factory=list)
    acquisition: dict = field(default_factory=dict)

    @property
    def lesion_ml(self) -> float:
        return float(self.label.sum()) / 1000.0


_SAMPLERS: dict[str, LesionSampler] = {}


def _sampler(template: Template) -> LesionSampler:
    if template.name not in _SAMPLERS:
        _SAMPLERS[template.name] = LesionSampler(template)
    return _SAMPLERS[template.name]


def draw_lesion_kinds(rng: np.random.Generator) -> list[str]:
    """0 lesions in 10% of brains, 1 in 50%, 2-3 otherwise; kinds mixed."""
    count = int(rng.choice([0, 1, 2, 3], p=[0.1, 0.5, 0.25, 0.15]))
    return [str(k) for k in rng.choice(KINDS, size=count, p=[0.4, 0.3, 0.3])]


def make_case(
    seed: int,
    template_name: str | None = None,
    mode: Mode = "hypo",
    deform: bool = True,
    min_lesion_ml: float = 0.02,
    acquisition_profile: Acquisition = "standard",
) -> SyntheticCase:
    """Generate one case from ``seed`` (and optionally a fixed template)."""
    if acquisition_profile not in ("standard", "wide"):
        raise ValueError(
            f"Unknown acquisition profile {acquisition_profile!r}; use 'standard' or 'wide'"
        )
    wide = acquisition_profile == "wide"
    rng = np.random.default_rng(seed)
    if template_name is None:
        template_name = "mni2009c_head" if rng.random() < 0.7 else "mni2009a"
    template = load_template(template_name)
    sampler = _sampler(template)
    image = template.t1.copy()
    occupancy = np.zeros_like(image)
    lesions = []
    for kind in draw_lesion_kinds(rng):
        for _attempt in range(5):
            occ, spec = sampler.sample(kind, rng)
            if spec.volume_ml >= min_lesion_ml:
                occupancy = np.maximum(occupancy, occ)
                lesions.append(spec)
                break
    image = _blend_lesions(image, occupancy, template, rng, mode)
    acquisition: dict = {"template": template_name, "mode": mode}
    if deform:
        coords = augment.random_deformation(image.shape, rng)
        image = augment.warp(image, coords)
        occupancy = augment.warp(occupancy, coords)
    image *= augment.bias_field(image.shape, rng, strength=0.6 if wide else 0.3)
    image, acquisition["resolution"] = augment.degrade_resolution(image, rng)
    if wide:
        acquisition["profile"] = "wide"
        if rng.random() < 0.35:
            image = augment.blur(image, rng)
            acquisition["blur"] = True
    wm = template.white_intensity()
    noise = float(rng.uniform(0.01, 0.05)) * wm
    image = augment.add_noise(image, rng, noise)
    acquisition["noise_fraction_of_wm"] = round(noise / wm, 4)
    image = augment.contrast_gamma(image, rng)
    if wide and rng.random() < 0.5:
        image = augment.monotonic_remap(image, rng)
        acquisition["contrast_curve"] = True
    label = (occupancy > 0.5).astype(np.uint8)
    return SyntheticCase(
        image, label, template.affine.copy(), seed, template_name, lesions, acquisition
    )


def _blend_lesions(image, occupancy, template: Template, rng, mode: Mode) -> np.ndarray:
    if not occupancy.any():
        return image
    heterogeneity = 1 + 0.15 * _noise_like(occupancy, rng)
    if mode == "hypo":
        target = template.csf_intensity()
        strength = np.clip(rng.uniform(0.6, 1.0) * heterogeneity, 0, 1)
    elif mode == "hyper":
        target = template.white_intensity() * rng.uniform(1.35, 1.8)
        strength = np.clip(rng.uniform(0.6, 1.0) * heterogeneity, 0, 1)
    else:
        raise ValueError(f"Unknown mode {mode!r}; use 'hypo' or 'hyper'")
    alpha = occupancy * strength
    return (image * (1 - alpha) + target * alpha).astype(np.float32)


def _noise_like(reference: np.ndarray, rng) -> np.ndarray:
    box = ndimage.find_objects((reference > 0).astype(np.int8))[0]
    out = np.zeros_like(reference)
    local = ndimage.gaussian_filter(rng.standard_normal(reference[box].shape), 2.0)
    out[box] = local / max(float(local.std()), 1e-6)
    return out


def validation_seeds(count: int) -> list[int]:
    """The fixed validation split: seeds 900000.. (training uses seeds below 900000)."""
    return [VALIDATION_SEED_OFFSET + i for i in range(count)]
