"""Overlap-tile inference: tiled equals single pass, any size, any axis."""

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import ModelBundle
from napari_unet.core.inference import Predictor, as_channels_first
from napari_unet.core.normalization import NormalizationSpec
from napari_unet.core.progress import Cancelled
from napari_unet.core.tiling import plan_tiles
from napari_unet.core.unet import UNet, UNetConfig


def _bundle(padding: str, depth: int = 3, in_channels: int = 1) -> ModelBundle:
    torch.manual_seed(7)
    config = UNetConfig(
        in_channels=in_channels, num_classes=2, base_width=8, depth=depth, padding=padding
    )
    return ModelBundle(UNet(config).eval(), config, NormalizationSpec(), "t")


def test_valid_tiled_equals_single_pass(rng):
    bundle = _bundle("valid")
    image = rng.normal(size=(150, 203)).astype(np.float32)
    single = Predictor(bundle, precision="fp32", max_tile=1024).predict_slice(image)
    tiled_predictor = Predictor(bundle, precision="fp32", max_tile=100, batch_size=5)
    plan = plan_tiles(150, 203, bundle.config, 100)
    assert plan.count > 100  # really many tiles
    tiled = tiled_predictor.predict_slice(image)
    assert single.shape == tiled.shape == (150, 203)
    np.testing.assert_allclose(tiled, single, atol=1e-5)


def test_valid_single_pass_matches_raw_network_on_padded_input(rng):
    """The engine's stitched output is exactly the network output on the mirror-padded image."""
    bundle = _bundle("valid")
    predictor = Predictor(bundle, precision="fp32", max_tile=1024)
    image = rng.normal(size=(60, 60)).astype(np.float32)
    stats = predictor.fit_stats(image, 2)
    normalized = predictor.normalize(image[None], stats)
    plan = plan_tiles(60, 60, bundle.config, 1024)
    padded = plan.pad(normalized)
    with torch.inference_mode():
        raw = bundle.model.lesion_probability(bundle.model(torch.from_numpy(padded[None])))[0]
    np.testing.assert_allclose(
        predictor.predict_slice(image, stats), raw.numpy()[:60, :60], atol=1e-6
    )


def test_paper_configuration_tiles_a_larger_image(rng):
    torch.manual_seed(0)
    config = UNetConfig.paper()
    bundle = ModelBundle(UNet(config).eval(), config, NormalizationSpec(), "paper")
    plan = plan_tiles(700, 500, config, 572)
    assert plan.tile_input_shape == (572, 572)
    assert plan.count == 4  # 2x2 output tiles of 388 cover 700x500
    prob = Predictor(bundle, precision="fp32", max_tile=572, batch_size=2).predict_slice(
        rng.normal(size=(700, 500)).astype(np.float32)
    )
    assert prob.shape == (700, 500)
    assert np.all((prob >= 0) & (prob <= 1))


def test_same_padding_fits_in_one_pass_equals_blended_tiles_closely(rng):
    bundle = _bundle("same")
    image = rng.normal(size=(120, 90)).astype(np.float32)
    single = Predictor(bundle, precision="fp32", max_tile=512).predict_slice(image)
    tiled = Predictor(bundle, precision="fp32", max_tile=64).predict_slice(image)
    assert plan_tiles(120, 90, bundle.config, 64).count > 1
    assert plan_tiles(120, 90, bundle.config, 512).count == 1
    # Zero padding inside the net is not shift-invariant: blended tiles differ slightly.
    assert np.abs(single - tiled).mean() < 0.01


@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (33, 17), (257, 256), (5, 1000)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_arbitrary_sizes(rng, shape, padding):
    bundle = _bundle(padding, depth=2)
    prob = Predictor(bundle, precision="fp32", max_tile=128).predict_slice(
        rng.normal(size=shape).astype(np.float32)
    )
    assert prob.shape == shape
    assert np.isfinite(prob).all()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_volume_along_each_axis_matches_slices(rng, axis):
    bundle = _bundle("same")
    predictor = Predictor(bundle, precision="fp32", batch_size=4)
    volume = rng.normal(size=(6, 40, 50)).astype(np.float32)
    stats = predictor.fit_stats(volume, 3)
    prob = predictor.predict_volume(volume, axis=axis, stats=stats)
    assert prob.shape == volume.shape
    index = 3
    slice_image = np.take(volume, index, axis=axis)
    np.testing.assert_allclose(
        np.take(prob, index, axis=axis), predictor.predict_slice(slice_image, stats), atol=1e-5
    )


def test_volume_progress_and_cancel(rng):
    predictor = Predictor(_bundle("same"), precision="fp32", batch_size=2)
    volume = rng.normal(size=(10, 32, 32)).astype(np.float32)
    events = []
    predictor.predict_volume(volume, progress=events.append)
    assert events[-1].done == events[-1].total == 10
    assert [e.done for e in events] == sorted(e.done for e in events)
    with pytest.raises(Cancelled):
        predictor.predict_volume(volume, should_stop=lambda: True)


def test_multichannel_input_and_channel_mismatch(rng):
    predictor = Predictor(_bundle("same", in_channels=2), precision="fp32")
    prob = predictor.predict_slice(rng.normal(size=(2, 30, 30)).astype(np.float32))
    assert prob.shape == (30, 30)
    with pytest.raises(ValueError, match="expects 2 input channel"):
        predictor.predict_slice(rng.normal(size=(30, 30)).astype(np.float32))
    with pytest.raises(ValueError, match="Expected a 2D image"):
        as_channels_first(np.zeros((2, 3, 4, 5)), 2, 2)


def test_nan_voxels_do_not_poison_the_output(rng):
    predictor = Predictor(_bundle("same"), precision="fp32")
    image = rng.normal(size=(40, 40)).astype(np.float32)
    image[5:10, 5:10] = np.nan
    image[0, 0] = np.inf
    assert np.isfinite(predictor.predict_slice(image)).all()


def test_bad_device_is_refused():
    with pytest.raises(ValueError, match="Unknown device"):
        Predictor(_bundle("same"), precision="fp32", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            Predictor(_bundle("same"), precision="fp32", device="cuda")
    assert Predictor(_bundle("same"), precision="fp32", device="auto").device.type in (
        "cpu",
        "cuda",
        "mps",
    )


def test_flip_uncertainty_counts_disagreeing_area_per_slice(rng):
    from napari_unet.core.progress import drain
    from napari_unet.core.uncertainty import iter_flip_uncertainty

    bundle = _bundle("same")
    predictor = Predictor(bundle, precision="fp32")
    volume = rng.normal(size=(4, 32, 32)).astype(np.float32)
    plain = predictor.predict_volume(volume, 0)
    flipped = predictor.predict_volume(np.ascontiguousarray(volume[..., ::-1]), 0)[..., ::-1]
    expected = ((plain >= 0.5) != (flipped >= 0.5)).sum(axis=(1, 2))
    result = drain(iter_flip_uncertainty(predictor, volume, 0, (2.0, 1.0, 0.5), 0.5))
    assert result.probability.shape == result.disagreement.shape == volume.shape
    np.testing.assert_allclose(result.probability, (plain + flipped) / 2, atol=1e-6)
    np.testing.assert_allclose(result.per_slice_mm2, expected * 0.5)
    if expected.max() > 0:
        assert result.most_uncertain() == int(np.argmax(expected))
        assert result.most_uncertain({int(np.argmax(expected))}) != int(np.argmax(expected))


def test_mirror_tta_averages_the_plain_and_mirrored_passes_on_any_axis(rng):
    """``mirror=True`` is the mean of the plain pass and the mirrored pass, mirrored back,
    for every slice axis and for chunks of any size; progress still counts slices once."""
    from napari_unet.core.progress import run_with_callback

    bundle = _bundle("same")
    predictor = Predictor(bundle, precision="fp32", batch_size=3)
    volume = rng.normal(size=(5, 24, 20)).astype(np.float32)
    stats = predictor.fit_stats(volume, 3)
    for axis in range(3):
        plain = predictor.predict_volume(volume, axis, stats)
        slices = np.moveaxis(volume, axis, 0)
        mirrored_input = np.moveaxis(np.ascontiguousarray(slices[..., ::-1]), 0, axis)
        mirrored = np.moveaxis(
            np.moveaxis(predictor.predict_volume(mirrored_input, axis, stats), axis, 0)[..., ::-1],
            0,
            axis,
        )
        assert np.abs(plain - mirrored).max() > 1e-4  # an untrained net is not symmetric
        events = []
        both = run_with_callback(
            predictor.iter_predict_volume(volume, axis, stats, chunk_slices=2, mirror=True),
            events.append,
        )
        np.testing.assert_allclose(both, (plain + mirrored) / 2, atol=1e-5)
        assert events[-1].done == events[-1].total == volume.shape[axis]
        assert all(e.done <= e.total for e in events)


def test_batchnorm_folding_keeps_outputs(rng):
    from napari_unet.core.fusion import fold_batchnorm

    torch.manual_seed(3)
    config = UNetConfig(num_classes=1, base_width=8, depth=3, padding="same", norm="batch")
    model = UNet(config)
    with torch.no_grad():  # give the running statistics non-trivial values
        model.train()
        for _ in range(5):
            model(torch.randn(4, 1, 48, 48) * 3 + 1)
    model.eval()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original kept
    x = torch.randn(2, 1, 64, 80)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_skipping_constant_tiles_changes_nothing(rng):
    bundle = _bundle("same")
    volume = np.zeros((8, 40, 48), np.float32)
    volume[3:5, 10:30, 10:40] = rng.normal(size=(2, 20, 30))  # only two slices hold anything
    fast = Predictor(bundle, precision="fp32", skip_constant=True)
    plain = Predictor(bundle, precision="fp32", skip_constant=False)
    calls = []
    original = fast._forward
    fast._forward = lambda batch: calls.append(len(batch)) or original(batch)
    np.testing.assert_allclose(  # batch composition changes float rounding only
        fast.predict_volume(volume, 0), plain.predict_volume(volume, 0), atol=1e-6
    )
    assert sum(calls) == 3  # two real slices + one cached empty slice, not eight


def test_optimized_path_matches_the_plain_path(rng):
    """bf16 autocast (where native) and channels-last change probabilities only slightly."""
    from napari_unet.core.models import get_model
    from napari_unet.core.precision import cpu_has_native_bf16

    bundle = get_model(None)
    image = rng.normal(100, 20, (4, 120, 136)).astype(np.float32)
    image[:, 40:70, 50:90] -= 60  # a dark blob so both classes occur
    fast = Predictor(bundle)  # defaults: precision auto, channels-last
    plain = Predictor(bundle, precision="fp32", channels_last=False)
    assert fast.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert fast.model is not bundle.model  # the bundle's module is never changed in place
    a, b = fast.predict_volume(image, 0), plain.predict_volume(image, 0)
    assert np.abs(a - b).max() < (0.05 if fast.precision == "bf16" else 1e-4)
    agree = ((a >= 0.5) == (b >= 0.5)).mean()
    assert agree > 0.999


def test_bf16_weights_cast_once_compute_what_bf16_autocast_computes(rng):
    """The bf16 path casts weights once; its logits equal autocast's, which re-casts per call."""
    from napari_unet.core.fusion import fold_batchnorm
    from napari_unet.core.models import get_model

    bundle = get_model(None)
    # unfused: a fused split convolution rounds differently, which is not what this checks
    predictor = Predictor(bundle, device="cpu", precision="bf16", channels_last=False, fused=False)
    assert next(predictor.model.parameters()).dtype == torch.bfloat16
    assert next(bundle.model.parameters()).dtype == torch.float32  # the bundle is untouched
    batch = rng.normal(size=(2, bundle.config.in_channels, 64, 80)).astype(np.float32)
    reference = fold_batchnorm(bundle.model).eval()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = reference.lesion_probability(reference(torch.from_numpy(batch)).float())
    np.testing.assert_allclose(predictor._forward(batch), expected.numpy(), atol=1e-6)


def test_precision_choice_is_explicit_and_validated():
    from napari_unet.core.precision import cpu_has_native_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_native_bf16() else "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", cpu)
