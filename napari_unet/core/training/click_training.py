"""Training a click-guided U-Net: click channels added to an automatic model, simulated users.

Following DeepGrow/DeepEdit, each batch gets clicks from a simulated user: a
share of patches gets none (so the network stays an automatic model), the others
get a first positive click near a lesion's centre and then up to
``corrective_rounds`` clicks at the largest error of the network's own current
prediction (run without gradients), positive on misses and negative on false
positives. For a model with a previous-mask channel, each round also feeds the
object the earlier clicks drew (the part of that prediction connected to a
positive click, as the engine keeps it), as RITM does.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ..checkpoint import ModelBundle
from ..click_maps import (
    CLICK_CHANNELS,
    PREVIOUS_MASK_CHANNELS,
    click_maps,
    clicked_object,
    first_click,
    next_click,
)
from ..precision import autocast
from ..unet import UNet


def with_click_channels(bundle: ModelBundle, extra: int = CLICK_CHANNELS) -> ModelBundle:
    """A copy of an automatic model with ``extra`` zero-initialized click input channels.

    With empty click maps the new network computes exactly what the old one did, so
    click training starts from the automatic model's quality.
    """
    if bundle.click_channels:
        raise ValueError(f"{bundle.version_id} already has {bundle.click_channels} click channels")
    return _with_zero_input_channels(bundle, extra, extra)


def with_previous_mask_channel(bundle: ModelBundle) -> ModelBundle:
    """A copy of a two-channel click model with a zero-initialized previous-mask channel.

    Whatever the previous mask holds, the new network computes exactly what the old one
    did, so training starts from the click model's quality.
    """
    if bundle.click_channels != CLICK_CHANNELS:
        raise ValueError(
            f"{bundle.version_id} has {bundle.click_channels} click channels; a previous-mask "
            f"channel is added to a click model with {CLICK_CHANNELS} (lesion-t1-clicks)"
        )
    return _with_zero_input_channels(bundle, 1, PREVIOUS_MASK_CHANNELS)


def _with_zero_input_channels(bundle: ModelBundle, extra: int, click_channels: int) -> ModelBundle:
    old = bundle.model.state_dict()["inc.0.weight"]
    grown = torch.zeros(old.shape[0], old.shape[1] + extra, *old.shape[2:], dtype=old.dtype)
    grown[:, : old.shape[1]] = old
    return bundle.with_first_convolution(grown, click_channels, bundle.context_slices, {})


def _background_click(
    image: np.ndarray, truth: np.ndarray, rng: np.random.Generator
) -> tuple[int, int, bool] | None:
    """A negative click on head tissue at least 5 pixels away from any lesion."""
    far = ndimage.distance_transform_edt(~truth) > 5 if truth.any() else np.ones_like(truth)
    rows, cols = np.nonzero(far & (image > image.min() + 1e-3))
    if len(rows) == 0:
        return None
    k = int(rng.integers(len(rows)))
    return int(rows[k]), int(cols[k]), False


def _encode(
    images: torch.Tensor,
    clicks: list[list[tuple[int, int, bool]]],
    channels: int,
    previous: list[np.ndarray | None],
) -> torch.Tensor:
    shape = tuple(images.shape[-2:])
    maps = np.stack(
        [click_maps(shape, c, channels, p) for c, p in zip(clicks, previous, strict=True)]
    )
    return torch.cat([images, torch.from_numpy(maps)], dim=1)


def add_simulated_clicks(
    model: UNet,
    images: torch.Tensor,
    masks: torch.Tensor,
    rng: np.random.Generator,
    device: torch.device,
    precision: str,
    no_click_fraction: float = 0.25,
    corrective_rounds: int = 3,
    threshold: float = 0.5,
    centre_channel: int = 0,
    click_channels: int = CLICK_CHANNELS,
) -> torch.Tensor:
    """Images (B, C, P, P) with ``click_channels`` click channels appended, from a simulated user.

    ``centre_channel`` is the channel holding the clicked slice itself (2.5D inputs
    also hold its neighbours).
    """
    truths = masks.numpy() > 0.5
    clicks: list[list[tuple[int, int, bool]]] = [[] for _ in range(len(truths))]
    previous: list[np.ndarray | None] = [None] * len(truths)
    active = []
    for b, truth in enumerate(truths):
        if rng.random() < no_click_fraction:
            continue
        active.append(b)
        first = first_click(truth, rng)
        if first is None or rng.random() < 0.15:  # also: users reject false positives
            negative = _background_click(images[b, centre_channel].numpy(), truth, rng)
            if negative is not None:
                clicks[b].append(negative)
        if first is not None:
            clicks[b].append(first)
    rounds = int(rng.integers(0, corrective_rounds + 1)) if active else 0
    for _ in range(rounds):
        was_training = model.training
        model.eval()
        with torch.no_grad(), autocast(precision, device):
            logits = model(_encode(images, clicks, click_channels, previous).to(device))
        model.train(was_training)
        predicted = model.lesion_probability(logits.float()).cpu().numpy() >= threshold
        for b in active:
            click = next_click(predicted[b], truths[b])
            if click is not None:
                if click_channels == PREVIOUS_MASK_CHANNELS:
                    previous[b] = clicked_object(predicted[b], clicks[b])
                clicks[b].append(click)
    return _encode(images, clicks, click_channels, previous)
