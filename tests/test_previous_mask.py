"""The previous-mask click channel (RITM-style): encoding, growing a model, training, the engine."""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_unet.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from napari_unet.core.click_maps import click_maps, clicked_object, first_click
from napari_unet.core.clicks import Click, patch_box
from napari_unet.core.guided import GuidedClickEngine
from napari_unet.core.inference import Predictor
from napari_unet.core.io import read_image
from napari_unet.core.models import CLICK_MODEL, get_model
from napari_unet.core.normalization import NormalizationSpec
from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1
from napari_unet.core.training.click_training import (
    add_simulated_clicks,
    with_click_channels,
    with_previous_mask_channel,
)
from napari_unet.core.training.trainer import TrainConfig, train
from napari_unet.core.unet import UNetConfig

from .helpers import toy_volume


def test_third_map_is_the_previous_mask():
    previous = np.zeros((40, 50), bool)
    previous[5:15, 8:20] = True
    maps = click_maps((40, 50), [(10, 12, True)], channels=3, previous=previous)
    assert maps.shape == (3, 40, 50)
    np.testing.assert_array_equal(maps[2], previous.astype(np.float32))
    np.testing.assert_array_equal(maps[:2], click_maps((40, 50), [(10, 12, True)]))
    assert not click_maps((40, 50), [(10, 12, True)], channels=3).any(axis=(1, 2))[2]
    with pytest.raises(ValueError, match="2 or 3 click channels, not 4"):
        click_maps((40, 50), [], channels=4)
    with pytest.raises(ValueError, match="does not match"):
        click_maps((40, 50), [], channels=3, previous=np.zeros((50, 40), bool))


def test_clicked_object_keeps_only_components_under_positive_clicks():
    mask = np.zeros((30, 30), bool)
    mask[2:8, 2:8] = True  # clicked
    mask[20:25, 20:25] = True  # not clicked
    mask[2:8, 20:25] = True  # only a negative click on it
    kept = clicked_object(mask, [(4, 4, True), (4, 22, False), (-3, 4, True)])
    assert kept.sum() == 36 and kept[4, 4] and not kept[22, 22] and not kept[4, 22]
    assert not clicked_object(mask, [(15, 15, True)]).any()  # a click on background


@pytest.fixture(scope="module")
def click_bundle():
    return get_model(CLICK_MODEL)


def test_grown_model_ignores_the_previous_mask_until_trained(click_bundle):
    grown = with_previous_mask_channel(click_bundle)
    channels = click_bundle.config.in_channels
    assert grown.click_channels == 3 and grown.config.in_channels == channels + 1
    assert grown.provenance["expanded_from"] == click_bundle.version_id
    x = torch.randn(2, channels, 64, 64)
    previous = (torch.rand(2, 1, 64, 64) > 0.5).float()
    with torch.no_grad():
        expected = click_bundle.model.eval()(x)
        got = grown.model.eval()(torch.cat([x, previous], 1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="has 3 click channels"):
        with_previous_mask_channel(grown)
    with pytest.raises(ValueError, match="has 0 click channels"):
        with_previous_mask_channel(get_model(None))


def test_simulated_user_feeds_the_object_of_the_earlier_clicks(click_bundle):
    image = read_image(SAMPLE_T1).data.astype(np.float32)
    truth = read_image(SAMPLE_LESION).data > 0.5
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    row, col, _ = first_click(truth[z])
    predictor = Predictor(click_bundle)
    stats = predictor.fit_stats(image, 3)
    patch = np.s_[:, row - 48 : row + 48, col - 48 : col + 48]
    slab = predictor.volume_slab(image, z, 0).astype(np.float32)[patch]  # 3 slices: 2.5D
    inputs = click_bundle.slab_size  # image channels before the click maps
    normalized = predictor.normalize(slab, stats)[:inputs]
    images = torch.from_numpy(np.repeat(normalized[None], 4, axis=0))
    masks = torch.from_numpy(np.repeat(truth[z][patch[1:]][None], 4, axis=0).astype(np.float32))
    grown = with_previous_mask_channel(click_bundle)
    fed = 0
    for seed in range(6):
        x = add_simulated_clicks(
            grown.model,
            images,
            masks,
            np.random.default_rng(seed),
            torch.device("cpu"),
            "fp32",
            click_channels=3,
        )
        assert x.shape == (4, inputs + 3, 96, 96)
        positives, previouses = x[:, inputs].numpy(), x[:, inputs + 2].numpy()
        for positive, previous in zip(positives, previouses, strict=True):
            assert set(np.unique(previous)) <= {0.0, 1.0}
            labels, count = ndimage.label(previous > 0, structure=np.ones((3, 3)))
            for k in range(1, count + 1):  # every part holds an earlier positive click
                assert positive[labels == k].max() == pytest.approx(1.0)
            fed += count > 0
    assert fed > 0  # corrective rounds happened and passed their object on


def test_training_a_previous_mask_model_end_to_end(tmp_path):
    torch.set_num_threads(2)
    model = UNetConfig(
        in_channels=4, num_classes=1, base_width=8, depth=2, padding="same", norm="batch"
    )
    config = TrainConfig(
        model=model,
        normalization=NormalizationSpec(scheme="none"),
        patch=32,
        batch_size=8,
        steps=20,
        lr=2e-2,
        warmup=5,
        val_every=20,
        seed=0,
        device="cpu",
        click_channels=3,
    )
    volumes = [toy_volume(s) for s in range(4)]
    gen = train(volumes[:3], volumes[3:], config, tmp_path / "run")
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            best = stop.value
            break
    bundle = load_checkpoint(best)
    assert bundle.click_channels == 3 and bundle.config.in_channels == 4
    assert 0.0 <= bundle.metrics["click_dice_1"] <= 1.0
    # the sidecar guards what the reader understands
    meta_path = best.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["click_channels"] = 4
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="click_channels is 4"):
        load_checkpoint(best)


def test_engine_feeds_what_it_drew_before_the_click(click_bundle, monkeypatch):
    image = read_image(SAMPLE_T1).data.astype(np.float32)
    truth = read_image(SAMPLE_LESION).data > 0.5
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    row, col, _ = first_click(truth[z])
    predictor = Predictor(with_previous_mask_channel(click_bundle))
    engine = GuidedClickEngine(predictor, image)
    seen = []
    plain = predictor.predict_prepared

    def recording(normalized, flip_average=False):  # every network call passes here
        seen.append(normalized[-predictor.bundle.click_channels :].copy())
        return plain(normalized, flip_average=flip_average)

    monkeypatch.setattr(predictor, "predict_prepared", recording)
    mask = engine.apply(Click(0, z, row, col, True), np.zeros(truth[z].shape, np.uint8), 0.5)
    assert seen[0].shape[0] == 3 and not seen[0][2].any()  # nothing drawn yet
    drawn = engine.added[(0, z)].copy()
    assert drawn.any() and (mask > 0)[drawn].all()
    engine.apply(Click(0, z, row + 1, col + 1, True), mask, 0.5)
    rows, cols = patch_box(row + 1, col + 1, truth[z].shape, engine.patch)
    np.testing.assert_array_equal(seen[1][2] > 0, drawn[rows, cols])
    assert drawn[rows, cols].any()
    # a two-channel model is still given two maps
    two = GuidedClickEngine(Predictor(click_bundle), image)
    assert two.predictor.bundle.click_channels == 2
    assert with_click_channels(get_model(None)).click_channels == 2


def test_save_and_load_keep_three_click_channels(click_bundle, tmp_path):
    grown = with_previous_mask_channel(click_bundle)
    path = save_checkpoint(grown, tmp_path / "prev.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.click_channels == 3
    assert loaded.config.in_channels == click_bundle.config.in_channels + 1
