"""Weight averaging (the session-8 default is an average of two fine-tunes)."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from napari_unet.core.averaging import average_bundles
from napari_unet.core.checkpoint import load_checkpoint, save_checkpoint
from napari_unet.core.unet import UNet, UNetConfig

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "average_weights.py"


def _perturbed(bundle, seed: int, version_id: str):
    other = copy.deepcopy(bundle)
    torch.manual_seed(seed)
    with torch.no_grad():
        for tensor in other.model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor))
    other.version_id = version_id
    return other


def test_the_average_is_the_mean_of_every_float_tensor(tiny_bundle):
    tiny_bundle.model.train()(torch.randn(2, 1, 32, 32))  # batch-norm stats and counters move
    tiny_bundle.model.eval()
    second = _perturbed(tiny_bundle, 1, "second")
    soup = average_bundles(tiny_bundle, second, 0.25)
    a, b, s = (m.model.state_dict() for m in (tiny_bundle, second, soup))
    for name, tensor in s.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, 0.25 * a[name] + 0.75 * b[name])
        else:
            assert torch.equal(tensor, a[name])
    assert soup.provenance["averaged_from"] == [tiny_bundle.version_id, "second"]
    assert soup.version_id not in (tiny_bundle.version_id, "second")
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():  # weight 1 is the first model, and the inputs are not touched
        torch.testing.assert_close(
            average_bundles(tiny_bundle, second, 1.0).model(x), tiny_bundle.model(x)
        )
        assert not torch.equal(soup.model(x), tiny_bundle.model(x))


def test_averaging_refuses_other_architectures_and_bad_weights(tiny_bundle):
    config = UNetConfig(in_channels=1, num_classes=1, base_width=4, depth=3, padding="same")
    other = copy.deepcopy(tiny_bundle)
    other.model, other.config, other.version_id = UNet(config).eval(), config, "narrow"
    with pytest.raises(ValueError, match="test-tiny and narrow have different architectures"):
        average_bundles(tiny_bundle, other)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], got 1.5"):
        average_bundles(tiny_bundle, tiny_bundle, 1.5)


def test_the_script_copies_the_declared_postprocessing(tmp_path, tiny_bundle):
    tiny_bundle.threshold, tiny_bundle.min_lesion_voxels = 0.3, 10
    first = save_checkpoint(tiny_bundle, tmp_path / "a.safetensors")
    second_bundle = _perturbed(tiny_bundle, 2, "b")
    second_bundle.threshold, second_bundle.min_lesion_extent_mm = 0.7, 7.0
    second = save_checkpoint(second_bundle, tmp_path / "b.safetensors")
    out = tmp_path / "soup.safetensors"
    command = [sys.executable, str(SCRIPT), str(first), str(second), "--postprocess-from"]
    done = subprocess.run(
        [*command, str(second), "--output", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    soup = load_checkpoint(out)
    assert (soup.threshold, soup.min_lesion_extent_mm) == (0.7, 7.0)
    assert soup.provenance["postprocess_from"] == "b" and out.stat().st_size > 0
    again = subprocess.run(
        [*command, str(second), "--output", str(out)], capture_output=True, text=True
    )
    assert again.returncode == 1 and "error:" in again.stderr and "already exists" in again.stderr
    assert "Traceback" not in again.stderr  # a message, not a crash; nothing overwritten
