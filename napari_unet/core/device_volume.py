"""Whole-volume inference that stays on the accelerator.

On a GPU the network needs ~20 ms for an MNI-sized volume, while the host-side steps
of the general path (normalising each slice in NumPy, mirror-padding, checking tiles
for constant content, stitching, one copy to the card per batch) take about ten times
that. Here the raw volume is copied to the device once, and normalisation, 2.5D slabs,
padding, the forward passes and the crop all run there; one copy brings the
probabilities back. It covers the common case of one tile per slice (slices up to the
predictor's ``max_tile``), with the general path's arithmetic, so its answers match it
to float rounding (tested on the CPU, where it can also run).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from . import normalization as norm
from .tiling import TilePlan

if TYPE_CHECKING:
    from .inference import Predictor
    from .progress import Progress


def supports(plan: TilePlan) -> bool:
    """One tile per slice, and margins that torch's reflect padding can produce."""
    rows, cols = plan.rows, plan.cols
    reflect_ok = all(max(axis.pad_before, axis.pad_after) < axis.length for axis in (rows, cols))
    return plan.count == 1 and reflect_ok


def normalize_on_device(
    volume: torch.Tensor, stats: list[norm.IntensityStats], spec: norm.NormalizationSpec
) -> torch.Tensor:
    """:func:`normalization.apply` for a (C, S, H, W) float32 tensor, per channel."""
    channels = []
    for channel, st in zip(volume, stats, strict=True):
        channel = torch.nan_to_num(
            channel, nan=st.clip_low, posinf=st.clip_high, neginf=st.clip_low
        )
        if spec.scheme != "none":
            channel = (channel.clamp(st.clip_low, st.clip_high) - st.mean) / st.std
        channels.append(channel)
    return torch.stack(channels)


def iter_volume(
    predictor: Predictor,
    moved: np.ndarray,
    slice_ids: list[int],
    stats: list[norm.IntensityStats],
    plan: TilePlan,
    chunk_slices: int,
    mirror: bool,
) -> Generator[Progress, None, np.ndarray]:
    """Probabilities (S, H, W) of the listed slices of a (C, S, H, W) volume; others 0."""
    from .progress import Progress

    bundle, device = predictor.bundle, predictor.device
    _, count, height, width = moved.shape
    with torch.inference_mode():  # entered per step: the mode must not leak past a yield
        volume = torch.from_numpy(np.ascontiguousarray(moved, dtype=np.float32)).to(device)
        volume = normalize_on_device(volume, stats, bundle.normalization)
        result = torch.zeros((count, height, width), dtype=torch.float32, device=device)
    context = bundle.context_slices
    offsets = torch.arange(-context, context + 1, device=device)
    pads = (plan.cols.pad_before, plan.cols.pad_after, plan.rows.pad_before, plan.rows.pad_after)
    row0, col0 = -plan.rows.out_offset, -plan.cols.out_offset
    total, done = len(slice_ids), 0
    yield Progress(0, total, "starting")
    for start in range(0, total, chunk_slices):
        ids = slice_ids[start : start + chunk_slices]
        with torch.inference_mode():
            _predict_chunk(predictor, volume, result, ids, offsets, pads, (row0, col0), mirror)
        done += len(ids)
        yield Progress(done, total)
    with torch.inference_mode():
        return result.cpu().numpy()


def _predict_chunk(
    predictor: Predictor,
    volume: torch.Tensor,
    result: torch.Tensor,
    ids: list[int],
    offsets: torch.Tensor,
    pads: tuple[int, int, int, int],
    origin: tuple[int, int],
    mirror: bool,
) -> None:
    """Slices ``ids`` of the normalised (C, S, H, W) ``volume`` into ``result`` (S, H, W)."""
    bundle = predictor.bundle
    count, height, width = result.shape
    centre = torch.as_tensor(ids, device=volume.device)
    windows = (centre[:, None] + offsets).clamp(0, count - 1)  # (N, 2k+1)
    inputs = volume[:, windows].permute(1, 0, 2, 3, 4)  # (N, C, 2k+1, H, W)
    inputs = inputs.reshape(len(ids), -1, height, width)  # channel-major, as on the host
    if bundle.click_channels:  # automatic mode: empty click maps
        empty = inputs.new_zeros((len(ids), bundle.click_channels, height, width))
        inputs = torch.cat([inputs, empty], dim=1)
    if mirror:
        inputs = torch.cat([inputs, inputs.flip(-1)])
    inputs = F.pad(inputs, pads, mode="reflect" if min(height, width) > 1 else "replicate")
    row0, col0 = origin
    probs = torch.cat(
        [
            _forward(predictor, inputs[b : b + predictor.batch_size])
            for b in range(0, len(inputs), predictor.batch_size)
        ]
    )[:, row0 : row0 + height, col0 : col0 + width]
    if mirror:
        probs = (probs[: len(ids)] + probs[len(ids) :].flip(-1)) / 2
    result[centre] = probs


def _forward(predictor: Predictor, batch: torch.Tensor) -> torch.Tensor:
    batch = batch.to(predictor.dtype).contiguous(memory_format=predictor.memory_format)
    with predictor.model_lock:  # a replayed graph reuses its output buffer
        logits = predictor.run_model(batch)
        return predictor.model.lesion_probability(logits.float())
