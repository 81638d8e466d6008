"""Zoom-in for small clicked objects: geometry, the sidecar setting and the guided engine."""

import json

import numpy as np
import pytest

from napari_unet.core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from napari_unet.core.click_maps import first_click
from napari_unet.core.click_zoom import (
    ClickZoom,
    ClickZoomError,
    magnified_point,
    magnify,
    reduce,
)
from napari_unet.core.clicks import Click
from napari_unet.core.guided import GuidedClickEngine
from napari_unet.core.inference import Predictor
from napari_unet.core.io import read_image
from napari_unet.core.models import CLICK_MODEL, get_model
from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1


def test_magnify_keeps_native_pixels_aligned(rng):
    ramp = np.tile(np.arange(12, dtype=np.float32), (3, 10, 1))  # (3, 10, 12), rises along x
    fine = magnify(ramp, 2)
    assert fine.shape == (3, 20, 24)
    # a misaligned grid would shift every block mean by a fraction of a pixel
    np.testing.assert_allclose(reduce(fine[0], 2)[:, 1:-1], ramp[0][:, 1:-1], atol=1e-5)
    np.testing.assert_allclose(magnify(np.full((2, 5, 7), 3.5), 3), 3.5)
    blocks = rng.random((6, 9))
    np.testing.assert_allclose(reduce(blocks.repeat(3, 0).repeat(3, 1), 3), blocks)
    row, col = magnified_point(5, 7, (2, 3), 2)
    assert (row, col) == (7, 9) and row // 2 == 5 - 2 and col // 2 == 7 - 3


def test_click_zoom_setting_is_checked():
    assert ClickZoom.from_dict({}) == ClickZoom(2, 24, 2, 0.5)
    assert ClickZoom.from_dict(ClickZoom(3, 16, 1, 0.25).to_dict()) == ClickZoom(3, 16, 1, 0.25)
    with pytest.raises(ClickZoomError, match="factor"):
        ClickZoom(factor=1)
    with pytest.raises(ClickZoomError, match="blend"):
        ClickZoom(blend=0.0)
    with pytest.raises(ClickZoomError, match="unknown fields"):
        ClickZoom.from_dict({"factr": 2})
    with pytest.raises(ClickZoomError, match="non-numeric"):
        ClickZoom.from_dict({"factor": "two"})


def test_click_zoom_travels_in_the_sidecar(tiny_bundle, tmp_path):
    tiny_bundle.click_zoom = ClickZoom(2, 20, 2, 0.5)
    path = save_checkpoint(tiny_bundle, tmp_path / "zoom.safetensors")
    assert json.loads(sidecar_path(path).read_text())["click_zoom"]["max_object"] == 20
    assert load_checkpoint(path).click_zoom == ClickZoom(2, 20, 2, 0.5)
    side = json.loads(sidecar_path(path).read_text())
    side["click_zoom"] = {"factor": 2, "blend": 2.0}
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match=r"zoom\.json: click_zoom blend"):
        load_checkpoint(path)
    tiny_bundle.click_zoom = None
    plain = save_checkpoint(tiny_bundle, tmp_path / "plain.safetensors")
    assert load_checkpoint(plain).click_zoom is None


def test_click_flip_average_travels_in_the_sidecar(tiny_bundle, tmp_path):
    assert tiny_bundle.click_flip_average is False  # off unless a model declares it
    tiny_bundle.click_flip_average = True
    path = save_checkpoint(tiny_bundle, tmp_path / "flip.safetensors")
    assert json.loads(sidecar_path(path).read_text())["click_flip_average"] is True
    assert load_checkpoint(path).click_flip_average is True
    side = json.loads(sidecar_path(path).read_text())
    side["click_flip_average"] = "yes"
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match=r"flip\.json: click_flip_average must be true or"):
        load_checkpoint(path)
    del side["click_flip_average"]  # sidecars written before session 28
    sidecar_path(path).write_text(json.dumps(side))
    assert load_checkpoint(path).click_flip_average is False


def test_a_new_network_keeps_the_click_settings(tiny_bundle):
    tiny_bundle.click_zoom, tiny_bundle.click_flip_average = ClickZoom(2, 20, 2, 0.5), True
    tiny_bundle.threshold, tiny_bundle.metrics = 0.4, {"val_dice": 0.5}
    grown = tiny_bundle.with_network(
        tiny_bundle.config, tiny_bundle.model.state_dict(), {"why": "test"}
    )
    assert grown.click_zoom == ClickZoom(2, 20, 2, 0.5) and grown.click_flip_average is True
    assert grown.threshold == 0.4 and grown.normalization == tiny_bundle.normalization
    assert grown.version_id != tiny_bundle.version_id and grown.model is not tiny_bundle.model
    assert grown.provenance == {"expanded_from": tiny_bundle.version_id, "why": "test"}
    assert grown.metrics == {} and grown.path is None  # measured and saved as a new version


class RecordingPredictor(Predictor):
    """The real predictor, keeping every network input's shape, click maps and answer."""

    def __init__(self, bundle):
        super().__init__(bundle)
        self.calls = []

    def predict_prepared(self, normalized, flip_average=False):
        prob = super().predict_prepared(normalized, flip_average)
        maps = normalized[-self.bundle.click_channels :].copy()
        self.calls.append((normalized.shape, maps, prob.copy()))
        return prob


@pytest.fixture(scope="module")
def sample():
    return read_image(SAMPLE_T1).data, read_image(SAMPLE_LESION).data > 0.5


def test_guided_engine_blends_a_magnified_look_at_a_small_object(sample):
    image, truth = sample
    predictor = RecordingPredictor(get_model(CLICK_MODEL))
    assert predictor.bundle.click_zoom == ClickZoom(2, 24, 2, 0.5)  # since session 22
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    row, col, _ = first_click(truth[z])
    zoom = ClickZoom(factor=2, max_object=1000, from_click=2, blend=0.5)
    engine = GuidedClickEngine(predictor, image, zoom=zoom)
    mask = engine.apply(Click(0, z, row, col, True), np.zeros(image.shape[1:], bool), 0.4)
    assert len(predictor.calls) == 1  # the first click does not zoom
    # a second, negative click beside the object: the native look, then the magnified one
    rows, cols = np.nonzero(mask)
    second = Click(0, z, int(rows.min()) - 2, col, False)
    key = (0, z)
    engine.clicks[key].append(second)
    native, box = engine.object_probability(second)
    crop = engine.zoom_box(second, native, box, 0.4)
    assert crop is not None
    assert crop[0].stop - crop[0].start == engine.patch // 2
    expected = native.copy()
    expected[crop] = 0.5 * native[crop]
    predictor.calls.clear()
    blended = engine.zoomed_probability(second, native.copy(), box, crop)
    ((shape, maps, fine),) = predictor.calls
    assert shape[-2:] == (engine.patch, engine.patch)  # 80 native pixels, magnified twice
    assert maps.shape[-2:] == shape[-2:] and maps[1].max() == pytest.approx(1.0)
    expected[crop] += 0.5 * reduce(fine, 2)
    np.testing.assert_allclose(blended, expected, atol=1e-6)
    outside = np.ones(native.shape, bool)
    outside[crop] = False
    np.testing.assert_array_equal(blended[outside], native[outside])
    assert np.abs(blended[crop] - native[crop]).max() > 1e-3  # the second look matters
    # an object longer than max_object is not zoomed
    small = GuidedClickEngine(predictor, image, zoom=ClickZoom(2, 1, 2, 0.5))
    small.apply(Click(0, z, row, col, True), np.zeros(image.shape[1:], bool), 0.4)
    small.clicks[key].append(second)
    assert small.zoom_box(second, native, box, 0.4) is None
    assert GuidedClickEngine(predictor, image, zoom=None).zoom_box(second, native, box, 0.4) is None


def test_copy_click_settings_gives_a_trained_model_the_bundled_engine(tiny_bundle, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import torch

    from napari_unet.core.training.click_training import with_click_channels

    script = Path(__file__).resolve().parent.parent / "scripts" / "copy_click_settings.py"
    source = with_click_channels(tiny_bundle)
    source.threshold, source.click_zoom, source.version_id = 0.4, ClickZoom(2, 24, 2, 0.5), "src"
    trained = with_click_channels(tiny_bundle)
    trained.threshold, trained.click_zoom, trained.version_id = 0.5, None, "trained"
    torch.nn.init.normal_(trained.model.state_dict()["inc.0.weight"])  # not the source's
    source_path = save_checkpoint(source, tmp_path / "source.safetensors")
    trained_path = save_checkpoint(trained, tmp_path / "trained.safetensors")
    output = tmp_path / "engine.safetensors"

    def run(model: Path, *extra: str, out: Path = output) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), "--model", str(model), "--settings-from",
             str(source_path), "--output", str(out), *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    done = run(trained_path)
    assert done.returncode == 0, done.stderr
    copied = load_checkpoint(output)
    assert copied.threshold == 0.4 and copied.click_zoom == ClickZoom(2, 24, 2, 0.5)
    assert copied.click_flip_average is False  # copied from the source, which has it off
    assert copied.version_id not in ("src", "trained")
    assert copied.provenance["click_settings_from"] == "src"
    assert copied.provenance["trained_version"] == "trained"
    for name, value in trained.model.state_dict().items():  # the weights are the trained ones
        assert torch.equal(copied.model.state_dict()[name], value), name
    before = output.read_bytes()
    again = run(trained_path)  # never overwrites
    assert again.returncode != 0 and output.read_bytes() == before
    flipped = run(trained_path, "--flip-average", out=tmp_path / "flipped.safetensors")
    assert flipped.returncode == 0, flipped.stderr
    assert "flip average True" in flipped.stdout
    assert load_checkpoint(tmp_path / "flipped.safetensors").click_flip_average is True
    plain = save_checkpoint(tiny_bundle, tmp_path / "plain.safetensors")
    refused = run(plain)
    assert refused.returncode == 2 and "plain.safetensors: 0 click channels" in refused.stderr
