"""Bridges between images on disk and the edit queue: queue slices, export datasets."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np

from . import normalization as norm
from .context import neighbour_indices
from .edit_queue import EditQueue, QueueError, QueueItem, file_sha256
from .io import LoadedImage
from .io.writers import atomic_write
from .normalization import NormalizationSpec

AXIS_ALIASES = {"0": 0, "1": 1, "2": 2}
QUEUED_NEIGHBOURS = 2  # slices stored on each side of a queued slice, for 2.5D models


def resolve_axis(axis: str | int, image: LoadedImage) -> int:
    """A display axis from 0/1/2 or axial/coronal/sagittal (named from the affine)."""
    if isinstance(axis, int) or str(axis) in AXIS_ALIASES:
        value = int(axis)
        if value not in (0, 1, 2):
            raise QueueError(f"axis must be 0, 1 or 2, got {value}")
        return value
    names = {image.geometry.display_axis_name(a): a for a in range(3)}
    if axis not in names:
        raise QueueError(f"unknown axis {axis!r}; use one of {sorted(names)} or 0, 1, 2")
    return names[axis]


def slab_affine(image: LoadedImage, axis: int, index: int) -> np.ndarray:
    """Voxel->RAS affine of the one-slice slab at ``index`` along display ``axis``."""
    shift = np.eye(4)
    shift[axis, 3] = index
    return image.geometry.display_affine @ shift


def queue_slices(
    queue: EditQueue,
    image: LoadedImage,
    mask: np.ndarray,
    prediction: np.ndarray | None = None,
    slices: list[int] | None = None,
    axis: int = 0,
    split: str = "train",
    note: str = "",
    model_version: str | None = None,
    source_sha256: str | None = None,
    clicks: dict[int, list] | None = None,
    normalization: NormalizationSpec | None = None,
) -> list[QueueItem]:
    """Queue one item per slice (default: every slice with lesion voxels).

    Each item keeps its slice's two neighbours on either side, for 2.5D models.

    The whole volume's normalization statistics are stored with each item, so a
    fine-tune sees each slice exactly as inference on the volume did.
    """
    mask = np.asarray(mask)
    if mask.shape != image.spatial_shape:
        raise QueueError(
            f"{image.path}: the mask's shape {mask.shape} does not match the image "
            f"{image.spatial_shape}"
        )
    if slices is None:
        other = tuple(a for a in range(3) if a != axis)
        slices = [int(i) for i in np.flatnonzero(np.any(mask > 0, axis=other))]
    if not slices:
        raise QueueError(f"{image.path}: nothing to queue (no slices selected, or an empty mask)")
    bad = [s for s in slices if not 0 <= s < mask.shape[axis]]
    if bad:
        raise QueueError(f"slices {bad} are outside 0..{mask.shape[axis] - 1} along axis {axis}")
    data = image.data if image.data.ndim == 4 else image.data[None]
    sha = source_sha256 or file_sha256(image.path)
    axis_name = image.geometry.display_axis_name(axis)
    spacing = image.geometry.display_spacing
    spec = normalization or NormalizationSpec()
    stats = {
        "spec": spec.to_dict(),
        "channels": [asdict(norm.fit(channel, spec)) for channel in data],
    }
    items = []
    for index in slices:
        items.append(
            queue.add(
                np.take(data, index, axis=axis + 1),
                np.take(mask, index, axis=axis),
                None if prediction is None else np.take(prediction, index, axis=axis),
                source_path=image.path,
                source_sha256=sha,
                axis=axis,
                axis_name=axis_name,
                slice_index=index,
                affine=slab_affine(image, axis, index),
                spacing=spacing,
                split=split,
                model_version=model_version,
                note=note,
                clicks=(clicks or {}).get(index),
                intensity_stats=stats,
                neighbours=_neighbours(data, axis, index),
            )
        )
    return items


def _neighbours(data: np.ndarray, axis: int, index: int) -> np.ndarray:
    """(C, 2m+1, H, W): the slice and its neighbours along ``axis``, edges repeated."""
    picked = np.take(
        data, neighbour_indices(index, data.shape[axis + 1], QUEUED_NEIGHBOURS), axis + 1
    )
    return np.moveaxis(picked, axis + 1, 1)


def _slab(array2d: np.ndarray, axis: int) -> np.ndarray:
    return np.expand_dims(array2d, axis)


def export_nnunet(queue: EditQueue, output: str | Path, dataset_name: str = "napari_unet") -> Path:
    """An nnU-Net v2 raw dataset: train items in imagesTr/labelsTr, validation in *Ts."""
    output = Path(output)
    items = queue.items()
    if not items:
        raise QueueError(f"{queue.workspace}: the queue is empty; nothing to export")
    channels = {item.channels for item in items}
    if len(channels) != 1:
        raise QueueError(f"items have different channel counts {sorted(channels)}")
    n_channels = channels.pop()
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (output / sub).mkdir(parents=True, exist_ok=True)
    n_train = 0
    for item in items:
        arrays = queue.arrays(item)
        case = f"item{item.id:05d}"
        images_dir, labels_dir = (
            ("imagesTr", "labelsTr") if item.split == "train" else ("imagesTs", "labelsTs")
        )
        n_train += item.split == "train"
        affine = np.asarray(item.affine)
        for channel in range(n_channels):
            slab = _slab(arrays["image"][channel].astype(np.float32), item.axis)
            _save(
                nib.Nifti1Image(slab, affine), output / images_dir / f"{case}_{channel:04d}.nii.gz"
            )
        _save(
            nib.Nifti1Image(_slab(arrays["mask"], item.axis), affine),
            output / labels_dir / f"{case}.nii.gz",
        )
    dataset = {
        "channel_names": {str(c): f"channel{c}" for c in range(n_channels)},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "name": dataset_name,
        "description": "Clinician-corrected slices exported from a napari-unet edit queue",
    }
    (output / "dataset.json").write_text(json.dumps(dataset, indent=2))
    _write_provenance(items, output / "provenance.csv")
    return output


def export_nifti(queue: EditQueue, output: str | Path) -> Path:
    """Plain image/mask NIfTI pairs per item with a CSV of the provenance."""
    output = Path(output)
    items = queue.items()
    if not items:
        raise QueueError(f"{queue.workspace}: the queue is empty; nothing to export")
    output.mkdir(parents=True, exist_ok=True)
    for item in items:
        arrays = queue.arrays(item)
        affine = np.asarray(item.affine)
        image = np.moveaxis(arrays["image"].astype(np.float32), 0, -1)  # channels last: 4D
        image = (
            np.expand_dims(image, item.axis)
            if image.shape[-1] > 1
            else _slab(image[..., 0], item.axis)
        )
        _save(nib.Nifti1Image(image, affine), output / f"item{item.id:05d}_image.nii.gz")
        _save(
            nib.Nifti1Image(_slab(arrays["mask"], item.axis), affine),
            output / f"item{item.id:05d}_mask.nii.gz",
        )
    _write_provenance(items, output / "provenance.csv")
    return output


def _save(image: nib.Nifti1Image, path: Path) -> None:
    image.set_sform(image.affine, code=1)
    image.set_qform(image.affine, code=1)
    atomic_write(path, lambda tmp: nib.save(image, tmp), overwrite=True)


def _write_provenance(items: list[QueueItem], path: Path) -> None:
    fields = [
        "id",
        "uid",
        "split",
        "source_path",
        "source_sha256",
        "axis",
        "axis_name",
        "slice_index",
        "revision",
        "model_version",
        "created_at",
        "user",
        "note",
        "added_voxels",
        "removed_voxels",
        "lesion_voxels",
        "spacing",
        "clicks",
    ]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for item in items:
            row = {f: getattr(item, f) for f in fields}
            row["spacing"] = json.dumps(item.spacing)
            row["clicks"] = json.dumps(item.clicks) if item.clicks else ""
            writer.writerow(row)
