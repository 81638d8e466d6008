"""Start a 2.5D model from a trained 2D (or narrower 2.5D) one, computing exactly what it did.

A 2.5D model (``context_slices = k``) takes every image channel's slices ``i-k .. i+k`` as
input channels (:mod:`napari_unet.core.context`). Copying the 2D first convolution into
each centre-slice channel and zeros into the neighbour channels gives a network whose
output equals the 2D one; fine-tuning then learns what the neighbours add, instead of
starting 2.5D training from scratch. A click-guided model keeps its click channels (they
stay last, after the grown image channels) with their weights unchanged, so with the same
clicks it too computes what the 2D model did.
"""

from __future__ import annotations

import torch

from ..checkpoint import ModelBundle


def with_context_slices(bundle: ModelBundle, context: int) -> ModelBundle:
    """A copy of a model (automatic or click-guided) that sees ``context`` neighbours per side.

    The model may be 2D or already 2.5D with fewer neighbours: its slab weights go to the
    centre of the wider slab and the added outer neighbours start at zero.
    """
    if context < 1:
        raise ValueError(f"context must be at least 1 neighbour per side, not {context}")
    have = bundle.context_slices
    if have >= context:
        raise ValueError(
            f"{bundle.version_id} is already 2.5D ({have} neighbours per side) and "
            f"{context} would drop trained neighbour weights; a model can only grow"
        )
    channels, clicks = bundle.image_channels, bundle.click_channels
    old_slab, slab = 2 * have + 1, 2 * context + 1
    old = bundle.model.state_dict()["inc.0.weight"]
    grown = torch.zeros(old.shape[0], channels * slab + clicks, *old.shape[2:], dtype=old.dtype)
    for channel in range(channels):  # channel-major: all neighbours of channel 0 first
        start = channel * slab + context - have
        grown[:, start : start + old_slab] = old[:, channel * old_slab : (channel + 1) * old_slab]
    if clicks:
        grown[:, channels * slab :] = old[:, channels * old_slab :]
    return bundle.with_first_convolution(grown, clicks, context, {"context_added": context - have})
