"""Click encoding, the simulated user, the click-guided engine and the NoC metrics."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import load_checkpoint, sha256_file
from napari_unet.core.click_eval import clicks_to_reach, lesion_slices, simulate_task, summarize
from napari_unet.core.click_maps import click_maps, first_click, next_click
from napari_unet.core.clicks import Click, ClickEngine, ClickOutsideImage
from napari_unet.core.guided import GuidedClickEngine
from napari_unet.core.inference import Predictor
from napari_unet.core.io import read_image
from napari_unet.core.metrics import dice
from napari_unet.core.models import CLICK_MODEL, get_model
from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1
from napari_unet.core.training.click_training import with_click_channels


def test_click_maps_put_gaussians_in_the_right_channel():
    maps = click_maps((40, 50), [(10, 12, True), (30, 40, False), (-5, 3, True)])
    assert maps.shape == (2, 40, 50) and maps.dtype == np.float32
    assert maps[0, 10, 12] == pytest.approx(1.0) and maps[1, 10, 12] < 1e-6
    assert maps[1, 30, 40] == pytest.approx(1.0) and maps[0, 30, 40] < 1e-6
    assert 0.5 < maps[0, 10, 15] < 0.7  # 3 px away at sigma 3: exp(-1/2)
    assert maps[0].sum() == pytest.approx(2 * np.pi * 9, rel=0.02)  # the outside click is dropped


def test_simulated_user_clicks_the_largest_error():
    truth = np.zeros((60, 60), bool)
    truth[10:30, 10:30] = True
    assert first_click(truth) == (19, 19, True) or first_click(truth) == (20, 20, True)
    prediction = np.zeros_like(truth)
    prediction[10:30, 10:20] = True  # half the lesion found
    prediction[45:55, 45:50] = True  # and a 50-pixel false positive
    row, col, positive = next_click(prediction, truth)
    assert positive and truth[row, col] and not prediction[row, col]
    prediction[10:30, 10:30] = True  # lesion complete: the false positive is left
    row, col, positive = next_click(prediction, truth)
    assert not positive and 45 <= row < 55 and 45 <= col < 50
    prediction[45:55, 45:50] = False
    assert next_click(prediction, truth) is None


def test_expanded_model_with_empty_clicks_equals_the_automatic_model():
    auto = get_model(None)
    guided = with_click_channels(auto)
    channels = auto.config.in_channels
    assert guided.click_channels == 2 and guided.config.in_channels == channels + 2
    assert guided.context_slices == auto.context_slices
    x = torch.randn(2, channels, 64, 64)
    with torch.no_grad():
        expected = auto.model.eval()(x)
        got = guided.model.eval()(torch.cat([x, torch.zeros(2, 2, 64, 64)], 1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="already has 2 click channels"):
        with_click_channels(guided)


@pytest.fixture(scope="module")
def sample():
    return read_image(SAMPLE_T1).data, read_image(SAMPLE_LESION).data > 0.5


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def click_predictor():
    return Predictor(get_model(CLICK_MODEL))


def test_click_model_ships_with_click_channels(click_predictor):
    bundle = click_predictor.bundle
    assert bundle.click_channels == 2 and bundle.image_channels == 1
    assert bundle.path.stat().st_size <= 10 * 1024 * 1024
    # since session 20: 2.5D like the automatic default it was grown from
    assert bundle.context_slices == 1 and bundle.config.in_channels == 3 + 2
    # since session 28: the uniform weight average of the session-27 model (kept in
    # docs/models) and its 2,400-step continuation, with mirror averaging declared
    assert bundle.config.widths() == [32, 32, 64, 128, 256]
    assert bundle.click_flip_average is True
    first = bundle.provenance["first"]
    assert bundle.provenance["averaged_from"] == [
        first["version_id"],
        bundle.provenance["second"]["version_id"],
    ]
    s27 = load_checkpoint(REPO / first["kept_as"])
    assert s27.version_id == first["version_id"] == "20261206T200134-4fd2bc71"
    assert sha256_file(REPO / first["kept_as"]) == first["sha256"]
    assert s27.click_flip_average is False and s27.config.widths() == bundle.config.widths()
    # session 27: the session-25 model with a 32-channel full-resolution level, trained on;
    # the session-25 model (kept in docs/models) was the session-24 one with a 16-channel
    # level, itself the session-22 one trained on (session 22's was grown from the
    # automatic default in session 20)
    init = s27.provenance["init_from"]
    assert init["widened_from"] == [16, 32, 64, 128, 256]
    assert init["expanded_from"] == "20261206T061957-b5438a69"
    previous = load_checkpoint(REPO / init["kept_as"])
    assert previous.version_id == init["expanded_from"]
    assert sha256_file(REPO / init["kept_as"]) == init["expanded_from_sha256"]
    assert previous.config.widths() == [16, 32, 64, 128, 256]
    s24 = load_checkpoint(REPO / previous.provenance["init_from"]["kept_as"])
    assert s24.version_id == previous.provenance["init_from"]["expanded_from"]
    older = s24.provenance["init_from"]
    assert older["version_id"] == "20261205T171540-27560687"
    assert load_checkpoint(REPO / older["kept_as"]).version_id == older["version_id"]


def test_guided_session_on_the_sample_converges(sample, click_predictor):
    image, truth = sample
    tasks = lesion_slices(truth, per_lesion=1)
    assert len(tasks) == 2  # the sample has two lesions: one task each
    largest = max(tasks, key=lambda t: truth[t.index][t.rows, t.cols].sum())
    engine = GuidedClickEngine(click_predictor, image)
    curve = simulate_task(engine, truth, largest, max_clicks=5)
    assert len(curve) == 5
    assert curve[0] > 0.7  # one click at the centre captures most of it
    assert max(curve[2:]) >= curve[0]  # corrective clicks do not make it worse
    assert clicks_to_reach(curve, 0.85, 20) <= 5


def test_flip_average_is_the_mean_of_the_patch_and_its_mirror(sample, click_predictor):
    image, truth = sample
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(truth[z])
    row, col = int(rows.mean()), int(cols.mean())
    slab = click_predictor.volume_slab(image, z, 0).astype(np.float32)  # (3, H, W): 2.5D
    assert slab.shape[0] == click_predictor.bundle.slab_size
    patch = slab[:, row - 40 : row + 40, col - 48 : col + 48]
    maps = click_maps(patch.shape[-2:], [(40, 48, True)])
    stats = click_predictor.fit_stats(image, 3)
    plain = click_predictor.predict_slice(patch, stats, click_maps=maps)
    mirrored = click_predictor.predict_slice(
        np.ascontiguousarray(patch[..., ::-1]),
        stats,
        click_maps=np.ascontiguousarray(maps[..., ::-1]),
    )[:, ::-1]
    averaged = click_predictor.predict_slice(patch, stats, click_maps=maps, flip_average=True)
    assert averaged.shape == patch.shape[-2:]
    np.testing.assert_allclose(averaged, (plain + mirrored) / 2, atol=1e-5)
    assert np.abs(plain - mirrored).max() > 1e-3  # the network is not mirror-symmetric
    # the guided engine averages when asked
    click = Click(0, z, row, col, True)
    for flip in (True, False):
        engine = GuidedClickEngine(click_predictor, image, stats, flip_average=flip)
        engine.clicks[(0, z)] = [click]
        prob, (r, c) = engine.object_probability(click)
        local = slab[:, r, c]
        local_maps = click_maps(local.shape[-2:], [(row - r.start, col - c.start, True)])
        expected = click_predictor.predict_slice(
            local, stats, click_maps=local_maps, flip_average=flip
        )
        np.testing.assert_allclose(prob, expected, atol=1e-6)
    # by default it does what the model's sidecar declares (click_flip_average)
    declared = click_predictor.bundle.click_flip_average
    assert GuidedClickEngine(click_predictor, image, stats).flip_average is declared
    other = Predictor(replace(click_predictor.bundle, click_flip_average=not declared))
    assert GuidedClickEngine(other, image, stats).flip_average is (not declared)


def test_guided_negative_click_and_hand_painted_voxels(sample, click_predictor):
    image, truth = sample
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    engine = GuidedClickEngine(click_predictor, image)
    row, col, _ = first_click(truth[z])
    painted = np.zeros(truth[z].shape, np.uint8)
    painted[2:6, 2:6] = 1  # a brush stroke far from the lesion, outside the click patch
    painted[row - 40 : row - 37, col : col + 3] = 1  # and a blob inside the patch
    after = engine.apply(Click(0, z, row, col, True), painted, 0.5)
    assert after[row, col] == 1 and dice(after > 0, truth[z]) > 0.6
    assert after[2:6, 2:6].all()  # hand-painted voxels outside the patch are kept
    assert after[row - 40 : row - 37, col : col + 3].all()  # and inside it, until...
    cleaned = engine.apply(Click(0, z, row - 39, col + 1, False), after, 0.5)
    assert not cleaned[row - 40 : row - 37, col : col + 3].any()  # ...a negative click on it
    assert cleaned[row, col] == 1 and cleaned[2:6, 2:6].all()
    with pytest.raises(ClickOutsideImage, match="outside the image"):
        engine.apply(Click(0, z, 10_000, 5, True), cleaned, 0.5)


def test_guided_engine_refuses_an_automatic_model(sample):
    with pytest.raises(ValueError, match="no click channels"):
        GuidedClickEngine(Predictor(get_model(None)), sample[0])


def test_baseline_engine_in_the_simulator_and_noc_summary(sample):
    image, truth = sample
    tasks = lesion_slices(truth, per_lesion=3)
    assert 2 <= len(tasks) <= 6 and all(truth[t.index].any() for t in tasks)  # 2 lesions
    engine = ClickEngine(Predictor(get_model(None)), image)
    curves = [simulate_task(engine, truth, t, max_clicks=5) for t in tasks]
    summary = summarize(curves, max_clicks=5)
    assert summary["tasks"] == len(tasks)
    assert 0.0 < summary["dice@1"] <= 1.0 and 1 <= summary["noc90"] <= 5
    assert clicks_to_reach([0.5, 0.86, 0.91], 0.85, 20) == 2
    assert clicks_to_reach([0.5, 0.6], 0.9, 20) == 20


def test_training_first_clicks_are_jittered_but_well_inside():
    truth = np.zeros((60, 60), bool)
    truth[10:30, 10:30] = True
    rng = np.random.default_rng(0)
    clicks = {first_click(truth, rng)[:2] for _ in range(20)}
    assert len(clicks) > 1  # not always the centre
    assert all(14 <= r <= 25 and 14 <= c <= 25 for r, c in clicks)  # >= 5 px from the edge


class _ScriptedEngine(GuidedClickEngine):
    """The engine with the network replaced by a script of probability maps."""

    def __init__(self, volume, maps, local_replace=False, negative_raise=False):
        self.predictor = None
        self.volume, self.stats, self.patch = volume, None, 64
        self.clicks, self.added, self.maps = {}, {}, list(maps)
        self.local_replace, self.zoom, self.refiner = local_replace, None, None
        self.negative_raise, self.negative_margin, self.negative_window = negative_raise, 1.1, 8

    def object_probability(self, click):
        return self.maps.pop(0), (slice(0, 64), slice(0, 64))


def _disc_map(row, col, radius, shape=(64, 64)):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return ((yy - row) ** 2 + (xx - col) ** 2 <= radius**2).astype(np.float32)


def test_an_overreacting_network_cannot_undo_earlier_clicks():
    volume = np.zeros((3, 64, 64), np.float32)
    nothing = np.zeros((64, 64), np.float32)
    engine = _ScriptedEngine(volume, [_disc_map(20, 20, 8), nothing, _disc_map(20, 20, 5)])
    empty = np.zeros((64, 64), np.uint8)
    first = engine.apply(Click(0, 1, 20, 20, True), empty, 0.5)
    assert first.sum() == _disc_map(20, 20, 8).sum()  # the network's object
    # a negative click on the rim; the network drops everything, which disobeys the
    # positive click: only the pixels nearer to the negative click go
    second = engine.apply(Click(0, 1, 20, 27, False), first, 0.5)
    assert second[20, 20] and second[20, 15] and not second[20, 27] and not second[20, 25]
    assert 0 < second.sum() < first.sum()
    # an answer that obeys both clicks replaces what the engine drew
    third = engine.apply(Click(0, 1, 21, 20, True), second, 0.5)
    assert third.sum() == _disc_map(20, 20, 5).sum() and not third[20, 27]


def test_evaluate_click_engines_reports_every_task(sample):
    from napari_unet.core.click_eval import evaluate_click_engines

    image, truth = sample
    report = evaluate_click_engines(
        [("sample", image, truth)],
        get_model(None),
        get_model(CLICK_MODEL),
        max_clicks=5,
        per_lesion=1,
        device="cpu",
    )
    (case,) = report["cases"]
    assert case["tasks"] == 2 == len(case["task_slices"]) == len(case["guided_task_noc90"])
    tasks = lesion_slices(truth, per_lesion=1)
    assert case["task_area_px"] == [int(truth[t.index][t.rows, t.cols].sum()) for t in tasks]
    assert all(1 <= n <= 5 for n in case["guided_task_noc90"] + case["baseline_task_noc90"])
    assert case["guided_noc90"] == pytest.approx(np.mean(case["guided_task_noc90"]))
    assert report["guided"]["noc90"] == pytest.approx(case["guided_noc90"])
    # per-task NoC@85 and Dice@1 pool back to the summary (compare pairs them by brain)
    for engine in ("guided", "baseline"):
        assert report[engine]["noc85"] == pytest.approx(np.mean(case[f"{engine}_task_noc85"]))
        assert report[engine]["dice@1"] == pytest.approx(np.mean(case[f"{engine}_task_dice1"]))
        noc85, noc90 = case[f"{engine}_task_noc85"], case[f"{engine}_task_noc90"]
        assert all(a <= b for a, b in zip(noc85, noc90, strict=True))
    # one brain: resampling brains can only give back its own mean
    assert report["guided"]["noc90_ci95"] == pytest.approx([case["guided_noc90"]] * 2)
    assert len(report["mean_curves"]["guided"]) == 5
    # the large lesion (about 1,800 pixels in its box) reaches Dice 0.9 within two clicks,
    # and the guided curve rises with clicks. Over five: with the session-20 click model the
    # 16-pixel lacune dips at clicks 2-3 (mean 0.805 -> 0.786 -> 0.794) before it recovers
    # (0.827 at 5), the small-section weakness reported in docs/model-card-clicks.md
    largest = int(np.argmax(case["task_area_px"]))
    assert case["task_area_px"][largest] > 500 and case["guided_task_noc90"][largest] <= 2
    assert report["mean_curves"]["guided"][-1] > report["mean_curves"]["guided"][0]


@pytest.mark.parametrize("local_replace", [False, True])
def test_local_replace_keeps_the_far_side_of_an_obeyed_collapse(local_replace):
    volume = np.zeros((3, 64, 64), np.float32)
    collapsed = np.zeros((64, 64), np.float32)
    collapsed[20, 20] = 1.0  # obeys both clicks: positive inside, negative outside
    engine = _ScriptedEngine(volume, [_disc_map(20, 20, 8), collapsed], local_replace)
    first = engine.apply(Click(0, 1, 20, 20, True), np.zeros((64, 64), np.uint8), 0.5)
    assert first.sum() == _disc_map(20, 20, 8).sum()  # the first click: the same either way
    second = engine.apply(Click(0, 1, 20, 27, False), first, 0.5)
    assert second[20, 20] and not second[20, 27]
    if not local_replace:  # today's rule takes the network's one-pixel answer
        assert second.sum() == 1
    else:  # only pixels nearer to the negative click (col > 23.5) follow the network
        yy, xx = np.nonzero(first)
        expected = int((xx <= 23).sum())
        assert second.sum() == expected
        assert second[20, 14] and second[20, 23] and not second[20, 24]


@pytest.mark.parametrize("negative_raise", [False, True])
def test_negative_click_on_an_accepted_rim_raises_the_threshold_locally(negative_raise):
    volume = np.zeros((3, 64, 64), np.float32)
    yy, xx = np.ogrid[:64, :64]
    cone = np.clip(1 - np.hypot(yy - 32, xx - 32) / 20, 0, 1).astype(np.float32)
    engine = _ScriptedEngine(volume, [cone, cone], negative_raise=negative_raise)
    first = engine.apply(Click(0, 1, 32, 32, True), np.zeros((64, 64), np.uint8), 0.4)
    assert first[32, 44] and not first[32, 45]  # the cone above 0.4: radius 12
    # the network still accepts the rim pixel (0.45) the user calls "not lesion"
    second = engine.apply(Click(0, 1, 32, 43, False), first, 0.4)
    assert not second[32, 43] and second[32, 32] and second[32, 21]  # the far rim stays
    if negative_raise:  # the rim at or below 1.1 x 0.45 near the click goes, the core stays
        assert not second[32, 44] and not second[35, 42] and second[32, 42]
        assert first.sum() - second.sum() > 10
    else:  # only the clicked pixel
        assert first.sum() - second.sum() == 1
