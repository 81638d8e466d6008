"""Widening a trained model keeps its output, lets the new channels learn, and train uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.cli import main
from napari_unet.core.checkpoint import load_checkpoint, save_checkpoint
from napari_unet.core.inference import Predictor
from napari_unet.core.models import get_model
from napari_unet.core.training.widen import with_widths

WIDER = [8, 32, 64, 128, 256]
SHIPPED = [16, 32, 64, 128, 256]  # the default since session 20
MODELS = Path(__file__).resolve().parents[1] / "docs" / "models"
# The 2.5D default of sessions 14-16 (8-24-48-96-192), kept since the widened one replaced it.
NARROW_MODEL = MODELS / "lesion_t1_s14.safetensors"
# The default of sessions 17-19 (8-32-64-128-256); the session-20 default grew from it.
W32_MODEL = MODELS / "lesion_t1_w32.safetensors"


def narrow_model():
    bundle = load_checkpoint(NARROW_MODEL)
    assert bundle.config.widths() == [8, 24, 48, 96, 192] and bundle.context_slices == 1
    return bundle


def test_widened_default_predicts_exactly_what_it_did():
    torch.set_num_threads(2)
    narrow = narrow_model()
    wide = with_widths(narrow, [16, *WIDER[1:]])
    assert wide.config.widths() == [16, 32, 64, 128, 256]
    assert wide.context_slices == narrow.context_slices == 1
    assert wide.threshold == narrow.threshold and wide.grow_threshold == narrow.grow_threshold
    n_narrow = sum(p.numel() for p in narrow.model.parameters())
    n_wide = sum(p.numel() for p in wide.model.parameters())
    assert n_wide > 1.5 * n_narrow
    rng = np.random.default_rng(3)
    volume = rng.normal(100, 20, (8, 80, 80)).astype(np.float32)
    volume[2:6, 25:50, 25:50] -= 60
    a = Predictor(narrow, device="cpu", precision="fp32").predict_volume(volume, axis=0)
    b = Predictor(wide, device="cpu", precision="fp32").predict_volume(volume, axis=0)
    assert a.max() > 0.5 and np.abs(a - b).max() < 1e-5
    state, old = wide.model.state_dict(), narrow.model.state_dict()
    # a decoder's first convolution reads [skip | up]: the old blocks keep their weights,
    # and the added skip and up channels start unread
    conv = "ups.0.conv.0.weight"  # deepest decoder level: 96 -> 128 channels per block
    assert torch.equal(state[conv][:96, :96], old[conv][:, :96])
    assert torch.equal(state[conv][:96, 128:224], old[conv][:, 96:])
    assert float(state[conv][:, 96:128].abs().sum()) == 0.0
    assert float(state[conv][:, 224:].abs().sum()) == 0.0
    assert float(state[conv][96:, :96].abs().sum()) > 0  # added channels read old ones
    assert wide.provenance["widened_from"] == [8, 24, 48, 96, 192]


def test_added_channels_learn():
    narrow = narrow_model()
    wide = with_widths(narrow, WIDER)
    model = wide.model.train()
    x = torch.randn(2, 3, 64, 64)
    target = torch.zeros(2, 1, 64, 64)
    target[:, :, 20:40, 20:40] = 1
    torch.nn.functional.binary_cross_entropy_with_logits(model(x), target).backward()
    grad = model.ups[0].conv[0].weight.grad  # reads the added channels with zero weights
    assert float(grad[:, 96:128].abs().sum()) > 0  # so the next step makes them non-zero


def test_refuses_what_it_cannot_widen():
    narrow = narrow_model()
    with pytest.raises(ValueError, match="can only grow"):
        with_widths(narrow, [8, 16, 48, 96, 192])
    with pytest.raises(ValueError, match="depth"):
        with_widths(narrow, [8, 24, 48, 96])
    with pytest.raises(ValueError, match="already has"):
        with_widths(narrow, [8, 24, 48, 96, 192])


def test_train_widens_an_init(tmp_path, capsys):
    from napari_unet.core.synth.dataset import write_synthetic_dataset

    data = write_synthetic_dataset(tmp_path / "data", n_train=2, n_val=1, workers=1)
    init = tmp_path / "narrow.safetensors"
    save_checkpoint(narrow_model(), init)
    args = ["train", "--data", str(data), "--init", str(init), "--widths", "8,32,64,128,256"]
    args += ["--steps", "2", "--val-every", "2", "--batch-size", "2", "--patch", "64"]
    assert main([*args, "--output", str(tmp_path / "run"), "--threads", "2"]) == 0
    trained = load_checkpoint(tmp_path / "run" / "best.safetensors")
    assert trained.config.widths() == WIDER and trained.context_slices == 1
    origin = trained.provenance["init_from"]  # the run names the model it widened
    assert origin["expanded_from"] == narrow_model().version_id
    assert origin["widened_from"] == [8, 24, 48, 96, 192]
    args[6] = "8,16,48,96,192"  # narrower at one level: refused with the reason
    assert main([*args, "--output", str(tmp_path / "run2")]) == 2
    assert "a model can only grow" in capsys.readouterr().err


def test_bundled_default_is_the_widened_network_within_10_mb():
    bundle = get_model("lesion-t1")
    assert bundle.config.widths() == SHIPPED and bundle.context_slices == 1
    assert bundle.path.stat().st_size <= 10 * 1024 * 1024  # the limit for a shipped model
    w32 = load_checkpoint(W32_MODEL)
    assert w32.config.widths() == WIDER
    n_shipped = sum(p.numel() for p in bundle.model.parameters())
    for grown in (with_widths(w32, SHIPPED), with_widths(narrow_model(), SHIPPED)):
        assert sum(p.numel() for p in grown.model.parameters()) == n_shipped
    # grown from w32, not a copy of it: the full-resolution level was trained
    assert bundle.provenance["init_from"]["widened_from"] == WIDER
    assert not torch.equal(
        bundle.model.state_dict()["inc.0.weight"][:8], w32.model.state_dict()["inc.0.weight"]
    )
