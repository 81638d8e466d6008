"""2.5D models: neighbours as channels, the same in training, inference, queue and fine-tune."""

import numpy as np
import pytest
import torch

from napari_unet.core import queue_io
from napari_unet.core.checkpoint import (
    CheckpointError,
    ModelBundle,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from napari_unet.core.context import (
    neighbour_indices,
    repeat_slab,
    slab_from_neighbours,
    volume_slab,
)
from napari_unet.core.edit_queue import EditQueue, QueueError
from napari_unet.core.finetune import FinetuneConfig, evaluate_items, finetune, item_volume
from napari_unet.core.inference import Predictor
from napari_unet.core.io import LoadedImage
from napari_unet.core.io.geometry import ImageGeometry
from napari_unet.core.normalization import NormalizationSpec
from napari_unet.core.registry import ModelRegistry
from napari_unet.core.training.slices import SliceBank, Volume
from napari_unet.core.unet import UNet, UNetConfig


def _bundle(context: int = 2, channels: int = 1) -> ModelBundle:
    torch.manual_seed(0)
    config = UNetConfig(
        in_channels=channels * (2 * context + 1), num_classes=1, base_width=8, depth=3,
        padding="same", norm="batch",
    )  # fmt: skip
    return ModelBundle(
        UNet(config).eval(), config, NormalizationSpec(), "ctx", context_slices=context
    )


def test_neighbours_clamp_at_the_edges_and_stack_channel_major():
    assert neighbour_indices(0, 10, 2) == [0, 0, 0, 1, 2]
    assert neighbour_indices(9, 10, 1) == [8, 9, 9]
    with pytest.raises(IndexError, match="outside 0..9"):
        neighbour_indices(10, 10, 1)
    volume = np.arange(2 * 4 * 3 * 3).reshape(2, 4, 3, 3)  # (C, S, H, W)
    slab = volume_slab(volume, 1, 1)
    assert slab.shape == (6, 3, 3)
    np.testing.assert_array_equal(slab[:3], volume[0, 0:3])  # channel 0's neighbours first
    np.testing.assert_array_equal(slab[3:], volume[1, 0:3])
    assert repeat_slab(volume[:, 0], 2).shape == (10, 3, 3)
    stored = np.zeros((1, 5, 3, 3))
    assert slab_from_neighbours(stored, 1).shape == (3, 3, 3)
    with pytest.raises(ValueError, match="2 stored neighbour"):
        slab_from_neighbours(stored, 3)


def test_predictor_feeds_neighbours_and_slice_matches_volume():
    predictor = Predictor(_bundle(2), device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(9, 48, 40)).astype(np.float32)
    stats = predictor.fit_stats(volume, 3)
    whole = predictor.predict_volume(volume, stats=stats)
    one = predictor.predict_slice(predictor.volume_slab(volume, 4), stats)
    np.testing.assert_allclose(whole[4], one, atol=1e-5)
    changed = volume.copy()
    changed[5] += 3.0  # a neighbour changes: the prediction of slice 4 must follow
    again = predictor.predict_slice(predictor.volume_slab(changed, 4), stats)
    assert np.abs(again - one).max() > 1e-3
    changed[8] += 3.0  # two slices away from slice 5... but 3 away from 4: no effect on 4
    far = predictor.predict_slice(predictor.volume_slab(changed, 4), stats)
    np.testing.assert_allclose(far, again, atol=1e-6)
    # a lone 2D image is its own neighbours
    lone = predictor.predict_slice(volume[4], stats)
    np.testing.assert_allclose(
        lone, predictor.predict_slice(repeat_slab(volume[4][None], 2), stats), atol=1e-6
    )
    # along another axis the neighbours are taken along that axis
    coronal = predictor.predict_slice(predictor.volume_slab(volume, 20, axis=1), stats)
    np.testing.assert_allclose(predictor.predict_volume(volume, axis=1, stats=stats)[:, 20],
                               coronal, atol=1e-5)  # fmt: skip


def test_checkpoint_keeps_context_and_refuses_inconsistent_channels(tmp_path):
    path = save_checkpoint(_bundle(2), tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.context_slices == 2 and loaded.image_channels == 1 and loaded.slab_size == 5
    side = sidecar_path(path)
    side.write_text(side.read_text().replace('"context_slices": 2', '"context_slices": 1'))
    with pytest.raises(CheckpointError, match="slabs of 3 slices"):
        load_checkpoint(path)


def test_slice_bank_draws_slabs_and_small_lesions_as_often_as_large_ones():
    image = np.random.default_rng(1).normal(size=(1, 30, 64, 64)).astype(np.float16)
    mask = np.zeros((30, 64, 64), np.uint8)
    mask[2:28, 5:40, 5:40] = 1  # a large lesion through 26 slices
    mask[14:16, 55:58, 55:58] = 1  # an 18-voxel lacune
    bank = SliceBank([Volume("v", image, mask, (1.0, 1.0, 1.0))], context_slices=2)
    assert len(bank.lesion_components) == 2
    images, masks = bank.sample(np.random.default_rng(0), 400, 16, lesion_fraction=1.0)
    assert images.shape == (400, 5, 16, 16)
    lacune = np.mean([m[4:12, 4:12].any() and not m.all() for m in masks])
    # pixel-uniform sampling alone would centre on the lacune about 18/(26*50+18) = 1 %
    assert lacune > 0.15


def _case(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.normal(100, 10, size=(12, 32, 32)).astype(np.float32)
    mask = np.zeros(image.shape, np.uint8)
    mask[4:9, 10:20, 10:20] = 1
    image[mask > 0] -= 40
    path = tmp_path / "case.nii.gz"
    path.write_bytes(b"stand-in")  # only the hash is recorded
    return LoadedImage(image, ImageGeometry.from_affine(np.eye(4), image.shape), path), mask


def test_queued_items_keep_neighbours_for_25d_fine_tuning(tmp_path):
    loaded, mask = _case(tmp_path)
    queue = EditQueue(tmp_path / "ws")
    items = queue_io.queue_slices(queue, loaded, mask, slices=[0, 6], split="val")
    edge = queue.arrays(items[0])["neighbours"]
    assert edge.shape == (1, 5, 32, 32)
    np.testing.assert_array_equal(edge[0, :3], np.stack([loaded.data[0]] * 3))  # edge repeated
    np.testing.assert_array_equal(queue.arrays(items[1])["neighbours"][0], loaded.data[4:9])
    with pytest.raises(QueueError, match="do not fit the image slice"):
        queue.add(
            loaded.data[0], mask[0], None, source_path="x", source_sha256="0", axis=0,
            axis_name="axial", slice_index=0, affine=np.eye(4), spacing=(1, 1, 1),
            neighbours=np.zeros((1, 4, 32, 32)),
        )  # fmt: skip
    bundle = _bundle(2)
    volume = item_volume(queue, items[1], bundle.normalization)
    assert volume.image.shape == (1, 5, 32, 32) and volume.train_slices == (2,)
    assert volume.mask[2].sum() == mask[6].sum() and volume.mask[[0, 1, 3, 4]].sum() == 0
    # evaluation sees the slice with its real neighbours, as inference on the volume does
    predictor = Predictor(bundle, device="cpu", precision="fp32")
    expected = predictor.predict_volume(loaded.data)[6] >= bundle.threshold
    truth = mask[6] > 0
    dice = 2 * (expected & truth).sum() / max(1, expected.sum() + truth.sum())
    assert evaluate_items(bundle, [volume], "cpu")["dice"] == pytest.approx(dice, abs=1e-6)


def test_fine_tuning_a_25d_model_keeps_it_25d(tmp_path):
    loaded, mask = _case(tmp_path)
    workspace = tmp_path / "ws"
    queue = EditQueue(workspace)
    queue_io.queue_slices(queue, loaded, mask, slices=[5, 6, 7], split="train")
    registry = ModelRegistry(workspace)
    base = _bundle(2)
    base.version_id = "ctx-base"
    registry.register(base, parent=None, note="2.5D test model")
    generator = finetune(
        workspace, FinetuneConfig(steps=3, batch_size=4, patch=32, device="cpu"), base="ctx-base"
    )
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            result = stop.value
            break
    candidate = registry.load(result.candidate)
    assert candidate.context_slices == 2 and candidate.config.in_channels == 5
    assert registry.get(result.candidate).parent == "ctx-base"
