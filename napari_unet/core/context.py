"""2.5D input: a slice together with its neighbours along the slicing axis.

A model with ``context_slices = k`` sees, for every image channel, the slices
``i - k .. i + k`` stacked as input channels (channel-major: all neighbours of
channel 0, then of channel 1). At the first and last slice the missing
neighbours repeat the edge slice, the same rule for training and inference.
Stroke infarcts continue through neighbouring slices while most dark look-alikes
(sulci, vessels, partial-volume rims) change shape from one slice to the next,
so the neighbours carry the evidence a single slice lacks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def neighbour_indices(index: int, count: int, context: int) -> list[int]:
    """Slice indices ``index - context .. index + context``, clamped to ``0..count - 1``."""
    if not 0 <= index < count:
        raise IndexError(f"slice {index} is outside 0..{count - 1}")
    return [min(max(index + offset, 0), count - 1) for offset in range(-context, context + 1)]


def volume_slab(volume: np.ndarray, index: int, context: int) -> np.ndarray:
    """The 2.5D input (C * (2k+1), H, W) of slice ``index`` of a (C, S, H, W) volume."""
    if volume.ndim != 4:
        raise ValueError(f"expected a (C, S, H, W) volume, got shape {volume.shape}")
    picked = volume[:, neighbour_indices(index, volume.shape[1], context)]
    return picked.reshape(-1, *volume.shape[2:])


def repeat_slab(image: np.ndarray, context: int) -> np.ndarray:
    """The 2.5D input of a lone 2D image (C, H, W): every neighbour is the image itself."""
    if context == 0:
        return image
    return np.repeat(image, 2 * context + 1, axis=0)


def slab_from_neighbours(neighbours: np.ndarray, context: int) -> np.ndarray:
    """The 2.5D input from stored neighbours (C, 2m+1, H, W), m >= ``context``, centre m."""
    if neighbours.ndim != 4 or neighbours.shape[1] % 2 == 0:
        raise ValueError(f"expected (C, 2m+1, H, W) neighbours, got shape {neighbours.shape}")
    centre = neighbours.shape[1] // 2
    if context > centre:
        raise ValueError(f"{centre} stored neighbour(s) per side, the model needs {context}")
    picked = neighbours[:, centre - context : centre + context + 1]
    return picked.reshape(-1, *neighbours.shape[2:])


def expand_per_channel(values: Sequence, context: int) -> list:
    """Per-image-channel values (e.g. normalization statistics) repeated per neighbour."""
    return [value for value in values for _ in range(2 * context + 1)]
