"""Widen a trained U-Net's levels while it keeps computing exactly what it did.

Every added channel gets fresh random incoming weights (so it computes something and can
learn) and zero outgoing weights (so, at the start, nothing downstream sees it). The wider
network therefore starts from the trained model's output, and training decides what the
new channels add: the same idea as growing a 2D model to 2.5D
(:mod:`napari_unet.core.training.context_init`), applied to capacity instead of input.
Gradients reach the zero outgoing weights at once (the new channels' activations are not
zero), and through them the incoming weights.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from ..checkpoint import ModelBundle
from ..unet import UNet, UNetConfig

# a decoder's first convolution reads cat([skip, up-convolution]): two blocks of channels
_CONCAT_INPUT = re.compile(r"^ups\.\d+\.conv\.0$")


def with_widths(bundle: ModelBundle, widths: Sequence[int], seed: int = 0) -> ModelBundle:
    """A copy of ``bundle`` with ``widths`` channels per level (top first), same output.

    Every level must be at least as wide as before and the depth stays; group norm is
    refused because widening would regroup the trained channels.
    """
    old_widths = bundle.config.widths()
    widths = [int(w) for w in widths]
    if len(widths) != len(old_widths):
        raise ValueError(
            f"{bundle.version_id} has {len(old_widths)} levels ({_text(old_widths)}); "
            f"widths {_text(widths)} would change its depth, which widening cannot do"
        )
    if any(new < old for new, old in zip(widths, old_widths, strict=True)):
        raise ValueError(
            f"widths {_text(widths)} are narrower than {bundle.version_id}'s "
            f"{_text(old_widths)} at some level; a model can only grow"
        )
    if widths == old_widths:
        raise ValueError(f"{bundle.version_id} already has widths {_text(widths)}")
    if bundle.config.norm == "group":
        raise ValueError("a group-norm model cannot be widened without regrouping its channels")
    config = UNetConfig.from_dict(
        {**bundle.config.to_dict(), "base_width": widths[0], "level_widths": widths}
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        fresh = UNet(config)
    finally:
        torch.random.set_rng_state(generator_state)
    old_modules = dict(bundle.model.named_modules())
    state: dict[str, torch.Tensor] = {}
    for name, module in fresh.named_modules():
        old = old_modules[name]
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            state.update(_widened_convolution(name, module, old))
        elif not list(module.children()):  # norms and parameter-free leaves
            old_state = old.state_dict()
            for key, value in module.state_dict().items():
                state[f"{name}.{key}"] = _widened_vector(value, old_state[key])
    missing = set(fresh.state_dict()) - set(state)
    if missing:  # a layer type this function does not know: refuse rather than guess
        raise ValueError(f"cannot widen layers {sorted(missing)} of {bundle.version_id}")
    provenance = {"widened_from": old_widths, "widen_seed": seed}
    return bundle.with_network(config, state, provenance)


def _widened_convolution(
    name: str, module: nn.Conv2d | nn.ConvTranspose2d, old: nn.Module
) -> dict[str, torch.Tensor]:
    transposed = isinstance(module, nn.ConvTranspose2d)
    out_dim, in_dim = (1, 0) if transposed else (0, 1)
    weight = module.weight.detach().clone()
    old_weight = old.weight.detach()
    old_in, new_in = old_weight.shape[in_dim], weight.shape[in_dim]
    kept_in = _kept_inputs(name, old_in, new_in)
    added_in = torch.ones(new_in, dtype=torch.bool)
    added_in[kept_in] = False
    weight.index_fill_(in_dim, added_in.nonzero().flatten(), 0.0)  # nothing reads new channels
    kept_out = torch.arange(old_weight.shape[out_dim])
    rows, cols = (kept_in, kept_out) if transposed else (kept_out, kept_in)
    weight[rows[:, None], cols[None, :]] = old_weight
    tensors = {f"{name}.weight": weight}
    if module.bias is not None:
        bias = torch.zeros_like(module.bias.detach())
        bias[: old.bias.shape[0]] = old.bias.detach()
        tensors[f"{name}.bias"] = bias
    return tensors


def _kept_inputs(name: str, old_in: int, new_in: int) -> torch.Tensor:
    """Where the old input channels sit among the new ones."""
    if _CONCAT_INPUT.match(name):
        old_half, new_half = old_in // 2, new_in // 2
        return torch.cat([torch.arange(old_half), new_half + torch.arange(old_half)])
    return torch.arange(old_in)


def _widened_vector(fresh: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """A per-channel norm tensor: trained values first, the fresh defaults after them."""
    if fresh.ndim == 0:  # e.g. num_batches_tracked
        return old.clone()
    value = fresh.detach().clone()
    value[: old.shape[0]] = old.detach()
    return value


def _text(widths: Sequence[int]) -> str:
    return "-".join(map(str, widths))
