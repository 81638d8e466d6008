"""2.5D input: a slice together with its neighbours along the slicing axis.

A model with ``context_slices = k`` sees, for every image channel, the slices
``i - k .. i + k`` stacked as input channels (channel-major: all neighbours of
channel 0, then of channel 1). At the first and last slice the missing
neighbours repeat the edge slice, the same rule for training and inference.
Stroke infarcts continue through neighbouring slices while most dark look-alikes
(sulci, vessels, partial-volume rims) change shape from one slice to the next,
so the neighbours carry the evidence a single slice lacks.

A model learns its neighbours at its training data's slice distance (1 mm for the bundled
models). On a scan with other slice spacing the neighbours are taken at that distance
instead, ``step`` slices away (``step`` = the model's distance / the scan's), linearly
interpolated between slices: on 5 mm slices of the sample brain, Dice 0.909 against
0.814 with the neighbours one slice away (docs/model-card.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import normalization as norm


def neighbour_indices(index: int, count: int, context: int) -> list[int]:
    """Slice indices ``index - context .. index + context``, clamped to ``0..count - 1``."""
    if not 0 <= index < count:
        raise IndexError(f"slice {index} is outside 0..{count - 1}")
    return [min(max(index + offset, 0), count - 1) for offset in range(-context, context + 1)]


def neighbour_weights(
    index: int, count: int, context: int, step: float = 1.0
) -> list[tuple[int, int, float]]:
    """For each neighbour ``index + j * step`` (j = -k..k), clamped to the volume: the two
    slices around it and the weight of the second, ``(lower, upper, weight)``."""
    if not 0 <= index < count:
        raise IndexError(f"slice {index} is outside 0..{count - 1}")
    weights = []
    for offset in range(-context, context + 1):
        position = min(max(index + offset * step, 0.0), count - 1.0)
        lower = int(np.floor(position))
        upper = min(lower + 1, count - 1)
        weights.append((lower, upper, float(position - lower)))
    return weights


def volume_slab(volume: np.ndarray, index: int, context: int, step: float = 1.0) -> np.ndarray:
    """The 2.5D input (C * (2k+1), H, W) of slice ``index`` of a (C, S, H, W) volume, its
    neighbours ``step`` slices apart (interpolated where that falls between slices)."""
    if volume.ndim != 4:
        raise ValueError(f"expected a (C, S, H, W) volume, got shape {volume.shape}")
    if step == 1.0:
        picked = volume[:, neighbour_indices(index, volume.shape[1], context)]
        return picked.reshape(-1, *volume.shape[2:])
    return np.stack(
        [
            interpolate_slice(volume[c], lower, upper, weight)
            for c in range(volume.shape[0])
            for lower, upper, weight in neighbour_weights(index, volume.shape[1], context, step)
        ]
    )


def interpolate_slice(stack: np.ndarray, lower: int, upper: int, weight: float) -> np.ndarray:
    """``stack[lower]`` and ``stack[upper]`` blended linearly (float32); exact when on a slice."""
    first = np.asarray(stack[lower], dtype=np.float32)
    if weight == 0.0 or upper == lower:
        return first
    return (1.0 - weight) * first + weight * np.asarray(stack[upper], dtype=np.float32)


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


def normalized_slabs(
    moved: np.ndarray,
    ids: Sequence[int],
    stats: Sequence[norm.IntensityStats],
    spec: norm.NormalizationSpec,
    context: int,
    step: float = 1.0,
    click_channels: int = 0,
) -> np.ndarray:
    """Normalized 2.5D inputs (N, channels, H, W) of slices ``ids`` of a (C, S, H, W) volume,
    with ``click_channels`` empty channels at the end.

    Each slice a chunk needs (its own and its neighbours') is normalized once; a
    neighbour between two slices (``step`` not 1) is blended from both raw slices and
    then normalized, exactly as :func:`volume_slab` followed by normalization does.
    """
    windows = [neighbour_weights(i, moved.shape[1], context, step) for i in ids]
    needed = sorted({lo for window in windows for lo, _, w in window if not w})
    position = {j: p for p, j in enumerate(needed)}
    block = np.stack(
        [norm.apply(ch, st, spec) for ch, st in zip(moved[:, needed], stats, strict=True)]
    )  # (C, len(needed), H, W)
    height, width = moved.shape[2:]
    channels = block.shape[0] * (2 * context + 1) + click_channels
    chunk = np.zeros((len(ids), channels, height, width), dtype=np.float32)
    for n, window in enumerate(windows):
        channel = 0
        for c, plane in enumerate(block):
            for lo, hi, weight in window:
                if weight:  # between slices: blend the raw slices, then normalize
                    raw = interpolate_slice(moved[c], lo, hi, weight)
                    chunk[n, channel] = norm.apply(raw, stats[c], spec)
                else:
                    chunk[n, channel] = plane[position[lo]]
                channel += 1
    return chunk


def expand_per_channel(values: Sequence, context: int) -> list:
    """Per-image-channel values (e.g. normalization statistics) repeated per neighbour."""
    return [value for value in values for _ in range(2 * context + 1)]
