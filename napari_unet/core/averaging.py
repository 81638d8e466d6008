"""Weight averaging of checkpoints that share one architecture (a uniform "model soup").

Two fine-tunes from one trajectory (one continued from the other's weights) lie in one
basin of the loss, so their average is a model in its own right; the session-8 default is
such an average (docs/model-card.md).
"""

from __future__ import annotations

import copy
import dataclasses

from .checkpoint import ModelBundle, new_version_id


def average_bundles(first: ModelBundle, second: ModelBundle, weight: float = 0.5) -> ModelBundle:
    """``weight`` × first + (1 − weight) × second, tensor by tensor, as a new version.

    Batch-norm running statistics are averaged like weights; integer tensors (batch-norm
    step counters) are the first model's. Everything else (normalisation, post-processing,
    click channels) is the first model's; the caller sets what should differ.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the weight of the first model must lie in [0, 1], got {weight}")
    if first.config != second.config or first.click_channels != second.click_channels:
        raise ValueError(
            f"{first.version_id} and {second.version_id} have different architectures "
            f"({first.config} vs {second.config}); only one architecture can be averaged"
        )
    state_a, state_b = first.model.state_dict(), second.model.state_dict()
    averaged = {
        name: weight * tensor + (1.0 - weight) * state_b[name]
        if tensor.is_floating_point()
        else tensor.clone()
        for name, tensor in state_a.items()
    }
    model = copy.deepcopy(first.model)
    model.load_state_dict(averaged)
    return dataclasses.replace(
        first,
        model=model.eval(),
        version_id=new_version_id(),
        provenance={
            "averaged_from": [first.version_id, second.version_id],
            "weight_of_first": weight,
        },
        metrics={},
        path=None,
    )
