"""Growing a 2D model to 2.5D keeps its output, and train --context-slices uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.cli import main
from napari_unet.core.checkpoint import load_checkpoint, save_checkpoint
from napari_unet.core.inference import Predictor
from napari_unet.core.models import get_model
from napari_unet.core.training.context_init import with_context_slices

# The 2D default of session 14, kept next to the docs since the 2.5D model replaced it.
FLAT_MODEL = Path(__file__).resolve().parents[1] / "docs" / "models" / "lesion_t1_2d.safetensors"
# The 2D click model of sessions 9-19, kept since the 2.5D one grown from lesion-t1 replaced it.
FLAT_CLICK_MODEL = FLAT_MODEL.with_name("lesion_t1_clicks_soup9.safetensors")


def flat_model():
    """A real trained 2D model (the bundled one is 2.5D since session 14)."""
    bundle = load_checkpoint(FLAT_MODEL)
    assert bundle.context_slices == 0
    return bundle


def test_grown_model_predicts_exactly_what_the_2d_model_did():
    torch.set_num_threads(2)
    flat = flat_model()
    grown = with_context_slices(flat, 1)
    assert grown.config.in_channels == 3 and grown.context_slices == 1
    assert grown.slab_size == 3 and grown.image_channels == 1
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 20, (6, 64, 64)).astype(np.float32)
    volume[:, 20:40, 20:40] -= 60  # slices differ, so a mis-placed weight would show
    volume[2:4] += rng.normal(0, 30, (2, 64, 64)).astype(np.float32)
    a = Predictor(flat, device="cpu", precision="fp32").predict_volume(volume, axis=0)
    b = Predictor(grown, device="cpu", precision="fp32").predict_volume(volume, axis=0)
    assert np.abs(a - b).max() < 1e-5
    # the neighbour weights start at zero and are free to learn
    weight = grown.model.state_dict()["inc.0.weight"]
    assert float(weight[:, [0, 2]].abs().sum()) == 0.0
    assert torch.equal(weight[:, 1], flat.model.state_dict()["inc.0.weight"][:, 0])


def test_refuses_what_it_cannot_grow():
    flat = flat_model()
    with pytest.raises(ValueError, match="at least 1"):
        with_context_slices(flat, 0)
    with pytest.raises(ValueError, match="already 2.5D"):
        with_context_slices(with_context_slices(flat, 1), 1)
    with pytest.raises(ValueError, match="can only grow"):
        with_context_slices(with_context_slices(flat, 2), 1)


def test_a_25d_model_grows_wider_and_predicts_what_it_did():
    torch.set_num_threads(2)
    narrow = get_model("lesion-t1")  # the bundled 2.5D default, one neighbour per side
    assert narrow.context_slices == 1
    wide = with_context_slices(narrow, 2)
    assert wide.context_slices == 2 and wide.config.in_channels == 5
    rng = np.random.default_rng(2)
    volume = rng.normal(100, 20, (8, 64, 64)).astype(np.float32)
    volume[2:6, 20:40, 20:40] -= 60
    volume[3:5] += rng.normal(0, 30, (2, 64, 64)).astype(np.float32)
    a = Predictor(narrow, device="cpu", precision="fp32").predict_volume(volume, axis=0)
    b = Predictor(wide, device="cpu", precision="fp32").predict_volume(volume, axis=0)
    assert a.max() > 0.01 and np.abs(a - b).max() < 1e-5
    weight = wide.model.state_dict()["inc.0.weight"]
    old = narrow.model.state_dict()["inc.0.weight"]
    assert float(weight[:, [0, 4]].abs().sum()) == 0.0  # the outer neighbours start at zero
    assert torch.equal(weight[:, 1:4], old)
    assert wide.provenance["expanded_from"] == narrow.version_id


def test_grown_click_model_answers_clicks_exactly_as_the_2d_one():
    from napari_unet.core.click_maps import click_maps

    torch.set_num_threads(2)
    flat = load_checkpoint(FLAT_CLICK_MODEL)
    assert flat.context_slices == 0 and flat.click_channels == 2
    grown = with_context_slices(flat, 1)
    assert grown.click_channels == 2 and grown.image_channels == 1
    assert grown.config.in_channels == 5  # three slices, then the positive and negative maps
    rng = np.random.default_rng(1)
    volume = rng.normal(100, 20, (5, 96, 96)).astype(np.float32)
    volume[1:4, 30:60, 30:60] -= 60
    maps = click_maps((96, 96), [(45, 45, True), (10, 80, False)], 2)
    answers, unclicked = [], []
    for bundle in (flat, grown):
        predictor = Predictor(bundle, device="cpu", precision="fp32", batch_size=1)
        stats = predictor.fit_stats(volume, 3)
        slab = predictor.volume_slab(volume, 2, 0).astype(np.float32)
        answers.append(predictor.predict_slice(slab, stats, click_maps=maps))
        unclicked.append(predictor.predict_slice(slab, stats, click_maps=0 * maps))
    assert answers[0].shape == answers[1].shape == (96, 96)
    assert np.abs(answers[0] - answers[1]).max() < 1e-5
    assert np.abs(unclicked[0] - unclicked[1]).max() < 1e-5
    assert np.abs(answers[1] - unclicked[1]).max() > 0.05  # the click channels are used
    weight = grown.model.state_dict()["inc.0.weight"]
    old = flat.model.state_dict()["inc.0.weight"]
    assert torch.equal(weight[:, 3:], old[:, 1:])  # click weights kept, after the slab


def test_train_grows_a_2d_init(tmp_path, capsys):
    from napari_unet.core.synth.dataset import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", n_train=2, n_val=1, workers=1)
    init = tmp_path / "flat.safetensors"
    save_checkpoint(flat_model(), init)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--init", str(init), "--context-slices", "1"]
    args += ["--steps", "2", "--val-every", "2", "--batch-size", "2", "--patch", "64"]
    assert main([*args, "--output", str(out), "--threads", "2"]) == 0
    trained = load_checkpoint(out / "best.safetensors")
    assert trained.context_slices == 1 and trained.config.in_channels == 3
    grown_init = tmp_path / "grown.safetensors"
    save_checkpoint(with_context_slices(flat_model(), 1), grown_init)
    args[4] = str(grown_init)
    args[6] = "2"  # a 1-neighbour model grows to 2 neighbours
    assert main([*args, "--output", str(tmp_path / "run2"), "--threads", "2"]) == 0
    assert load_checkpoint(tmp_path / "run2" / "best.safetensors").context_slices == 2
    wider_init = tmp_path / "wider.safetensors"
    save_checkpoint(with_context_slices(flat_model(), 2), wider_init)
    # but a model never shrinks: that would drop trained neighbour weights
    args[4], args[6] = str(wider_init), "1"
    assert main([*args, "--output", str(tmp_path / "run3")]) == 2
    assert "a model can only grow" in capsys.readouterr().err
