"""The lesion-wise Dice term weighs every lesion equally and masks out the other lesions."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import load_checkpoint
from napari_unet.core.training.losses import lesion_probability, lesion_wise_dice_loss
from napari_unet.core.training.trainer import dice_ce_loss, train

from .helpers import toy_volume
from .test_training import _config


def _target() -> torch.Tensor:
    target = torch.zeros(2, 64, 64)
    target[0, 5:45, 5:45] = 1  # a large lesion, 1,600 pixels ...
    target[0, 55:59, 55:59] = 1  # ... and a lacune of 16 in the same patch
    target[1, 30:34, 30:34] = 1  # a lacune alone
    return target


def _logits(prob: torch.Tensor) -> torch.Tensor:
    return torch.logit(prob.clamp(1e-4, 1 - 1e-4))[:, None]


def test_perfect_prediction_scores_zero_even_with_several_lesions_per_patch():
    target = _target()
    # each lesion's Dice is taken with the other lesions masked out: predicting the large
    # lesion does not count as a false positive against the lacune beside it
    assert float(lesion_wise_dice_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)


def test_a_missed_lacune_costs_as_much_as_a_missed_infarct():
    target = _target()
    missed_lacune = target.clone()
    missed_lacune[0, 55:59, 55:59] = 0
    missed_infarct = target.clone()
    missed_infarct[0, 5:45, 5:45] = 0
    lacune_cost = float(lesion_wise_dice_loss(missed_lacune, target))
    infarct_cost = float(lesion_wise_dice_loss(missed_infarct, target))
    assert lacune_cost == pytest.approx(infarct_cost, rel=0.1)
    assert lacune_cost == pytest.approx(1 / 3, abs=0.03)  # one of three lesions at Dice ~0
    # the batch Dice + cross-entropy hardly sees the lacune
    base = float(dice_ce_loss(_logits(target), target, 1))
    batch_cost = float(dice_ce_loss(_logits(missed_lacune), target, 1)) - base
    assert lacune_cost > 10 * batch_cost  # 0.31 against 0.023


def test_false_positives_away_from_lesions_raise_it_and_empty_batches_give_zero():
    target = _target()
    with_blob = target.clone()
    with_blob[1, 50:60, 2:12] = 1
    assert float(lesion_wise_dice_loss(with_blob, target)) > 0.1
    empty = torch.zeros(2, 16, 16)
    prob = torch.full((2, 16, 16), 0.3, requires_grad=True)
    loss = lesion_wise_dice_loss(prob, empty)
    loss.backward()
    assert loss.item() == 0.0 and prob.grad is not None
    with pytest.raises(ValueError, match="expected"):
        lesion_wise_dice_loss(prob[0], empty[0])


def test_gradient_pushes_a_missed_lacune_up():
    target = _target()
    logits = torch.full((2, 1, 64, 64), -3.0, requires_grad=True)
    lesion_wise_dice_loss(lesion_probability(logits, 1), target).backward()
    assert float(logits.grad[1, 0, 31, 31]) < 0  # descent raises the lacune's logit
    assert float(logits.grad[1, 0, 5, 5]) >= 0


def test_training_with_the_term_learns_and_records_it(tmp_path):
    torch.set_num_threads(2)
    volumes = [toy_volume(s) for s in range(4)]
    config = dataclasses.replace(_config(40), lesion_wise_weight=1.0)
    best = None
    gen = train(volumes[:3], volumes[3:], config, tmp_path / "run")
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            best = stop.value
            break
    losses = [
        loss for _, loss in json.loads((tmp_path / "run" / "history.json").read_text())["train"]
    ]
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:8])
    assert max(e.val_dice for e in events if e.val_dice is not None) > 0.6
    assert load_checkpoint(best).provenance["train_config"]["lesion_wise_weight"] == 1.0
