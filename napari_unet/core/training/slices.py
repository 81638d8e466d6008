"""Axial training slices held in memory, and lesion-biased patch sampling.

Volumes are read with the same readers and normalized with the same
statistics code as inference, so training and inference see identical inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .. import normalization as norm
from ..context import volume_slab
from ..io import check_same_grid, read_channels, read_image
from ..spacing import TOLERANCE, resample_inplane, resampled_shape
from .datasets import CasePaths

log = logging.getLogger(__name__)


@dataclass
class Volume:
    """One normalized case in display order: image (C, Z, Y, X) float16, mask (Z, Y, X) uint8.

    A queued slice is a volume of its neighbours with one ``train_slices`` entry.
    """

    case: str
    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    train_slices: tuple[int, ...] | None = None  # slices with a known mask (default: all)


def load_volume(paths: CasePaths, spec: norm.NormalizationSpec, in_channels: int) -> Volume:
    image = read_channels(list(paths.images))
    if image.n_channels != in_channels:
        raise ValueError(
            f"{paths.case}: {image.n_channels} channel(s), the model expects {in_channels}"
        )
    mask = read_image(paths.mask)
    check_same_grid(mask, image, "a mask must be in its image's voxel grid")
    data = image.data if image.data.ndim == 4 else image.data[None]
    normalized = np.stack(
        [norm.apply(ch, norm.fit(ch, spec), spec).astype(np.float16) for ch in data]
    )
    labels = (np.asarray(mask.data) > 0.5).astype(np.uint8)
    return Volume(paths.case, normalized, labels, image.geometry.display_spacing)


class SliceBank:
    """All axial slices of the training volumes, with lesion pixels indexed for sampling.

    ``context_slices`` > 0 makes every sample a 2.5D slab: the slice and its
    neighbours as channels (:mod:`napari_unet.core.context`).
    """

    def __init__(self, volumes: list[Volume], context_slices: int = 0) -> None:
        if not volumes:
            raise ValueError("no training volumes")
        self.volumes = volumes
        self.context_slices = int(context_slices)
        self.slices: list[tuple[int, int]] = []  # (volume, z)
        self.masks: list[np.ndarray] = []
        self.lesion_pixels: list[tuple[int, int, int]] = []  # (slice, y, x), subsampled
        self.lesion_components: list[np.ndarray] = []  # indices into lesion_pixels, per lesion
        self.hard_negatives: list[tuple[int, int, int]] = []  # false-positive pixels, mined
        for v, volume in enumerate(volumes):
            background = volume.image[0].min()
            labels, _ = ndimage.label(volume.mask)
            by_component: dict[int, list[int]] = {}
            for z in volume.train_slices or range(volume.image.shape[1]):
                if float(volume.image[0, z].max()) <= float(background) + 1e-3:
                    continue  # empty slice outside the head
                index = len(self.slices)
                self.slices.append((v, z))
                self.masks.append(volume.mask[z])
                ys, xs = np.nonzero(volume.mask[z])
                ids = labels[z, ys, xs]
                for component in np.unique(ids):  # up to 50 points per lesion and slice
                    inside = np.flatnonzero(ids == component)
                    inside = inside[:: max(1, len(inside) // 50)]
                    members = by_component.setdefault(int(component), [])
                    members += range(len(self.lesion_pixels), len(self.lesion_pixels) + len(inside))
                    self.lesion_pixels += [(index, int(ys[i]), int(xs[i])) for i in inside]
            self.lesion_components += [np.asarray(p) for p in by_component.values()]
        log.info(
            "%d slices, %d lesions, %d lesion sample points",
            len(self.slices),
            len(self.lesion_components),
            len(self.lesion_pixels),
        )

    def slab(self, index: int) -> np.ndarray:
        """Model input of bank slice ``index``: (C * (2k+1), Y, X) float16."""
        v, z = self.slices[index]
        return volume_slab(self.volumes[v].image, z, self.context_slices)

    def __len__(self) -> int:
        return len(self.slices)

    def sample(
        self,
        rng: np.random.Generator,
        batch: int,
        patch: int,
        lesion_fraction: float,
        hard_negative_fraction: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """A batch of (B, C, P, P) float32 patches and (B, P, P) float32 masks.

        A patch is centred near a lesion with probability ``lesion_fraction`` (half of
        these pick a lesion uniformly, then a point in it, so small lesions are not
        outnumbered by the slices of large ones), near a
        mined false positive with ``hard_negative_fraction`` (once some are mined), and
        anywhere in the head otherwise.
        """
        images, masks = [], []
        for _ in range(batch):
            draw = rng.random()
            if self.lesion_pixels and draw < lesion_fraction:
                pool = self.lesion_pixels
                if rng.random() < 0.5:  # half the lesion patches: every lesion equally likely,
                    members = self.lesion_components[rng.integers(len(self.lesion_components))]
                    pool = [self.lesion_pixels[int(rng.choice(members))]]  # lacunes included
            elif self.hard_negatives and draw < lesion_fraction + hard_negative_fraction:
                pool = self.hard_negatives
            else:
                pool = None
            if pool is not None:
                index, y, x = pool[rng.integers(len(pool))]
                y += int(rng.integers(-patch // 3, patch // 3 + 1))
                x += int(rng.integers(-patch // 3, patch // 3 + 1))
            else:
                index, y, x = self.random_position(rng)
            image, mask = _crop(self.slab(index), self.masks[index], y, x, patch)
            images.append(image)
            masks.append(mask)
        return np.stack(images).astype(np.float32), np.stack(masks).astype(np.float32)

    def random_position(self, rng: np.random.Generator) -> tuple[int, int, int]:
        index = int(rng.integers(len(self.slices)))
        height, width = self.masks[index].shape
        return index, int(rng.integers(height)), int(rng.integers(width))

    def crops_at(
        self, positions: list[tuple[int, int, int]], patch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Patches and masks centred at (slice, y, x) positions, without augmentation."""
        pairs = [_crop(self.slab(i), self.masks[i], y, x, patch) for i, y, x in positions]
        return (
            np.stack([p[0] for p in pairs]).astype(np.float32),
            np.stack([p[1] for p in pairs]).astype(np.float32),
        )


def _crop(image: np.ndarray, mask: np.ndarray, cy: int, cx: int, patch: int):
    """A patch centred at (cy, cx), padded with the image minimum outside."""
    channels, height, width = image.shape
    out = np.empty((channels, patch, patch), dtype=image.dtype)
    out[:] = image.reshape(channels, -1).min(axis=1)[:, None, None]
    out_mask = np.zeros((patch, patch), dtype=mask.dtype)
    y0, x0 = cy - patch // 2, cx - patch // 2
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + patch, height), min(x0 + patch, width)
    if ye > ys and xe > xs:
        out[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = image[:, ys:ye, xs:xe]
        out_mask[ys - y0 : ye - y0, xs - x0 : xe - x0] = mask[ys:ye, xs:xe]
    return out, out_mask


def to_spacing(volume: Volume, pixel_mm: float | None, slice_mm: float | None) -> Volume:
    """``volume`` resampled to ``pixel_mm`` pixels and ``slice_mm`` slices (either None:
    kept; within 5 % also kept), the image linearly, the mask where half a voxel is lesion.

    Training then sees every case at the spacing inference resamples scans to, as nnU-Net
    resamples its training cases to the dataset's median spacing.
    """
    image, mask = volume.image, volume.mask
    spacing = list(volume.spacing)
    target = resampled_shape(mask.shape[1:], spacing[1:], pixel_mm)
    if target is not None:
        image, mask = resample_inplane(image, target), resample_inplane(mask, target)
        sizes = zip(spacing[1:], volume.mask.shape[1:], target, strict=True)
        spacing[1:] = [s * n / t for s, n, t in sizes]
    resample_slices = slice_mm is not None and abs(spacing[0] / slice_mm - 1.0) > TOLERANCE
    if resample_slices:  # the same linear resampling, with the slice axis in the plane
        if volume.train_slices is not None:
            raise ValueError(f"{volume.case}: chosen slices cannot be resampled along the slices")
        count = max(1, round(mask.shape[0] * spacing[0] / slice_mm))
        image = np.moveaxis(
            resample_inplane(np.moveaxis(image, 1, -2), (count, image.shape[-1])), -2, 1
        )
        mask = np.moveaxis(
            resample_inplane(np.moveaxis(mask, 0, -2), (count, mask.shape[-1])), -2, 0
        )
        spacing[0] *= volume.mask.shape[0] / count
    if target is None and not resample_slices:
        return volume
    return Volume(
        volume.case,
        np.asarray(image, dtype=np.float16),
        (np.asarray(mask) >= 0.5).astype(np.uint8),
        (spacing[0], spacing[1], spacing[2]),
        volume.train_slices,
    )


def load_volumes(
    cases: list[CasePaths],
    spec: norm.NormalizationSpec,
    in_channels: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[Volume]:
    volumes = []
    for done, case in enumerate(cases, start=1):
        volumes.append(load_volume(case, spec, in_channels))
        if progress:
            progress(done, len(cases))
    return volumes
