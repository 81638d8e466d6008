"""Checkpoints: safetensors + JSON sidecar round trip; malformed and tampered files refused."""

import json
import pickle

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import (
    CheckpointError,
    ModelBundle,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from napari_unet.core.inference import Predictor


def test_round_trip_is_bit_identical(tiny_bundle, tmp_path, rng):
    tiny_bundle.provenance = {"seed": 3}
    path = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    assert path.stat().st_size > 10_000
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["config"]["base_width"] == 8 and len(meta["weights_sha256"]) == 64
    loaded = load_checkpoint(path)
    assert loaded.config == tiny_bundle.config
    assert loaded.normalization == tiny_bundle.normalization
    assert loaded.provenance == {"seed": 3} and loaded.version_id == "test-tiny"
    for key, value in tiny_bundle.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key])
    image = rng.normal(size=(50, 60)).astype(np.float32)
    np.testing.assert_array_equal(
        Predictor(tiny_bundle).predict_slice(image), Predictor(loaded).predict_slice(image)
    )


def test_never_overwrites_without_asking(tiny_bundle, tmp_path):
    path = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(tiny_bundle, path)
    assert path.read_bytes() == before
    save_checkpoint(tiny_bundle, path, overwrite=True)


def test_truncated_weights_are_named(tiny_bundle, tmp_path):
    path = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*sha256"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"m\.safetensors: not a readable safetensors"):
        load_checkpoint(path, verify_hash=False)


def test_empty_and_missing_files(tiny_bundle, tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.safetensors")
    path = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(path, verify_hash=False)


def test_missing_or_broken_sidecar(tiny_bundle, tmp_path):
    path = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    side = sidecar_path(path)
    side.write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    side.unlink()
    with pytest.raises(CheckpointError, match="sidecar m.json is missing"):
        load_checkpoint(path)


def test_config_mismatch_names_the_tensor(tiny_bundle, tmp_path):
    path = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    side = sidecar_path(path)
    meta = json.loads(side.read_text())
    meta["config"]["base_width"] = 16
    side.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(path)
    meta["config"]["base_width"] = 8
    meta["config"]["depth"] = 2
    side.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unexpected tensors"):
        load_checkpoint(path)


class _Exploit:
    """A pickle payload that would create a file if it were ever unpickled."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_payload_never_executes(tiny_bundle, tmp_path):
    marker = tmp_path / "pwned"
    _Exploit.marker = marker
    weights = tmp_path / "evil.pt"
    state = {"x": _Exploit()}
    with open(weights, "wb") as handle:
        pickle.dump(state, handle)
    good = save_checkpoint(tiny_bundle, tmp_path / "good.safetensors")
    meta = json.loads(sidecar_path(good).read_text())
    meta["weights_sha256"] = None
    sidecar_path(weights).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(weights)
    assert not marker.exists()
    # the same payload in torch's own zip format is refused as well
    torch.save(state, weights)
    assert not marker.exists()  # torch.save only pickles, nothing ran yet
    with pytest.raises(CheckpointError, match="refused to load"):
        load_checkpoint(weights)
    assert not marker.exists()


def test_plain_torch_state_dict_is_accepted(tiny_bundle, tmp_path):
    weights = tmp_path / "plain.pt"
    torch.save(tiny_bundle.model.state_dict(), weights)
    good = save_checkpoint(tiny_bundle, tmp_path / "plain_src.safetensors")
    meta = json.loads(sidecar_path(good).read_text())
    meta["weights_sha256"] = None
    sidecar_path(weights).write_text(json.dumps(meta))
    loaded = load_checkpoint(weights)
    assert isinstance(loaded, ModelBundle)


def test_saved_checkpoints_get_normal_file_permissions(tiny_bundle, tmp_path):
    """Not the 0600 of a temporary file: other users and tools must be able to read them."""
    import os

    mask = os.umask(0o022)
    try:
        path = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
        save_checkpoint(tiny_bundle, path, overwrite=True)
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
    assert path.with_suffix(".json").stat().st_mode & 0o777 == 0o644


def test_growth_threshold_round_trips_and_drives_postprocess(tiny_bundle, tmp_path):
    assert tiny_bundle.grow_threshold is None  # off unless a model declares it
    tiny_bundle.grow_threshold = 0.2
    loaded = load_checkpoint(save_checkpoint(tiny_bundle, tmp_path / "grow.safetensors"))
    assert loaded.grow_threshold == pytest.approx(0.2)
    prob = np.zeros((4, 12, 12), np.float32)
    prob[1:3, 2:8, 2:8] = 0.3
    prob[1:3, 4:6, 4:6] = 0.9
    mask = (prob >= 0.5).astype(np.uint8)
    assert int(loaded.postprocess(mask, (1.0, 1.0, 1.0), probability=prob).sum()) == 72
    assert int(loaded.postprocess(mask, (1.0, 1.0, 1.0)).sum()) == 8  # no map, no growth
    # a sidecar written before the field existed loads with growth off
    path = tmp_path / "old.safetensors"
    tiny_bundle.grow_threshold = None
    save_checkpoint(tiny_bundle, path)
    meta = json.loads(sidecar_path(path).read_text())
    del meta["grow_threshold"]
    sidecar_path(path).write_text(json.dumps(meta))
    assert load_checkpoint(path).grow_threshold is None
