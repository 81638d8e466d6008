"""Training: the loss falls, validation picks the best checkpoint, resume and seeds are exact."""

import json

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import load_checkpoint
from napari_unet.core.normalization import NormalizationSpec
from napari_unet.core.training.slices import SliceBank
from napari_unet.core.training.trainer import TrainConfig, dice_ce_loss, train
from napari_unet.core.unet import UNetConfig

from .helpers import toy_volume


def _config(steps: int, seed: int = 0) -> TrainConfig:
    model = UNetConfig(
        in_channels=1, num_classes=1, base_width=8, depth=2, padding="same", norm="batch"
    )
    return TrainConfig(
        model=model,
        normalization=NormalizationSpec(scheme="none"),
        patch=32,
        batch_size=8,
        steps=steps,
        lr=2e-2,
        warmup=5,
        val_every=20,
        seed=seed,
        device="cpu",
    )


def _run(volumes, config, run_dir, resume=True, stop_after=None):
    gen = train(volumes[:3], volumes[3:], config, run_dir, resume=resume)
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value
        if stop_after is not None and events[-1].step == stop_after:
            gen.close()  # the process is interrupted here
            return events, None


def test_loss_falls_and_best_checkpoint_is_valid(tmp_path):
    torch.set_num_threads(2)
    volumes = [toy_volume(s) for s in range(4)]
    events, best = _run(volumes, _config(60), tmp_path / "run")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    losses = [loss for _, loss in history["train"]]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
    val = [e for e in events if e.val_dice is not None]
    assert [e.step for e in val] == [20, 40, 60]
    assert val[-1].val_dice > 0.7
    bundle = load_checkpoint(best)
    assert bundle.metrics["val_dice"] == pytest.approx(max(e.val_dice for e in val))
    assert bundle.input_spacing_mm == 1.0  # the toy volumes have 1 mm pixels
    assert bundle.slice_spacing_mm is None  # a 2D model has no neighbours to space
    assert len(history["train"]) == 60 and len(history["val"]) == 3


def test_resume_continues_exactly_and_seed_reproduces(tmp_path):
    torch.set_num_threads(1)
    volumes = [toy_volume(s) for s in range(4)]
    straight, _ = _run(volumes, _config(40), tmp_path / "a")
    _run(volumes, _config(40), tmp_path / "b", stop_after=20)  # interrupted after step 20
    resumed, _ = _run(volumes, _config(40), tmp_path / "b")
    assert resumed[0].message == "resumed at step 20"
    assert resumed[-1].step == 40
    a = torch.load(tmp_path / "a" / "last_state.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last_state.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    again, _ = _run(volumes, _config(40), tmp_path / "c")
    assert [e.loss for e in again] == [e.loss for e in straight]


def test_patches_are_lesion_biased():
    bank = SliceBank([toy_volume(0)])
    rng = np.random.default_rng(0)
    _, masks = bank.sample(rng, 64, 32, lesion_fraction=1.0)
    assert (masks.reshape(64, -1).max(axis=1) > 0).mean() > 0.9


def test_loss_is_small_for_perfect_prediction():
    target = torch.zeros(2, 16, 16)
    target[:, 4:8, 4:8] = 1
    perfect = (target * 20 - 10)[:, None]
    assert float(dice_ce_loss(perfect, target, 1)) < 0.01
    assert float(dice_ce_loss(-perfect, target, 1)) > 1.0
