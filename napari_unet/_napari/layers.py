"""Converting between core images and napari layer-data tuples (no Qt here either)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.io import ImageGeometry, LoadedImage

META_KEY = "napari_unet"
ROLE_KEY = "napari_unet_role"  # "lesion" marks the lesion layer the widget edits and autosaves


def image_layer_tuple(image: LoadedImage, name: str | None = None) -> tuple:
    """An image layer in display order, scaled in mm, carrying what restores the file grid."""
    kwargs: dict[str, Any] = {
        "name": name or image.name,
        "scale": image.geometry.display_spacing,
        "metadata": {META_KEY: image.metadata()},
        "colormap": "gray",
    }
    if image.data.ndim == 4:
        kwargs["channel_axis"] = 0
        kwargs["name"] = image.channel_names or [
            f"{image.name} [{i}]" for i in range(image.data.shape[0])
        ]
        kwargs["metadata"] = [kwargs["metadata"]] * image.data.shape[0]
        kwargs["scale"] = [kwargs["scale"]] * image.data.shape[0]
        kwargs.pop("colormap")
    return (image.data, kwargs, "image")


def labels_layer_tuple(labels: np.ndarray, image: LoadedImage, name: str) -> tuple:
    kwargs = {
        "name": name,
        "scale": image.geometry.display_spacing,
        "metadata": {META_KEY: image.metadata()},
        "opacity": 0.6,
    }
    return (np.asarray(labels).astype(np.uint8, copy=False), kwargs, "labels")


def geometry_from_metadata(metadata: dict | None) -> ImageGeometry | None:
    """The source geometry stored by our reader, or None for layers from elsewhere."""
    if not metadata or META_KEY not in metadata:
        return None
    return ImageGeometry.from_metadata(metadata[META_KEY]["geometry"])
