"""npe2 reader: returns None for paths it does not handle, raises naming the file otherwise."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..core.io import can_read, read_image
from .layers import image_layer_tuple, labels_layer_tuple

_LABEL_NAME = re.compile(r"(lesion|mask|label|seg)", re.IGNORECASE)


def get_reader(path: str | list[str]) -> Callable | None:
    """The npe2 ``get_reader`` hook."""
    if isinstance(path, list):
        if not path or not all(can_read(p) for p in path):
            return None
        return read_layers
    return read_layers if can_read(path) else None


def read_layers(path: str | list[str]) -> list[tuple]:
    paths = path if isinstance(path, list) else [path]
    layers = []
    for item in paths:
        image = read_image(item)
        if _looks_like_labels(Path(item), image.data):
            layers.append(labels_layer_tuple(image.data.astype(np.uint8), image, image.name))
        else:
            layers.append(image_layer_tuple(image))
    return layers


def _looks_like_labels(path: Path, data: np.ndarray) -> bool:
    if not _LABEL_NAME.search(path.name) or data.ndim != 3:
        return False
    sample = data[:: max(1, data.shape[0] // 16)]
    return bool(np.all(np.equal(np.mod(sample, 1), 0)) and sample.max() < 256 and sample.min() >= 0)
