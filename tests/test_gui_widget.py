"""The real widget, loaded through the plugin manifest, driven under Xvfb."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet._napari.view import camera
from napari_unet.core.checkpoint import save_checkpoint
from napari_unet.core.io import read_image
from napari_unet.core.models import CLICK_MODEL, get_model
from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1

pytestmark = pytest.mark.gui


@pytest.fixture
def tiny_checkpoint(tiny_bundle, tmp_path):
    """A random tiny U-Net whose head is scaled so its probabilities spread over 0..1."""
    with torch.no_grad():
        tiny_bundle.model.head.weight *= 40
        tiny_bundle.model.head.bias.fill_(0.0)
    return save_checkpoint(tiny_bundle, tmp_path / "tiny.safetensors")


@pytest.fixture
def viewer_with_widget(make_napari_viewer):
    from superqt.utils import WorkerBase

    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "stroke_t1")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Lesion segmentation")
    yield viewer, widget
    from napari_unet._napari.qt_helpers import qt_alive

    # as napari does when the app quits: no worker (e.g. an autosave) outlives the viewer
    if qt_alive(widget.queue_panel._timer):  # a test may have closed the dock itself
        widget.queue_panel._timer.stop()
    WorkerBase.await_workers(msecs=30_000)


def _wait_idle(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


def test_manifest_widget_and_sample_layers(viewer_with_widget):
    viewer, widget = viewer_with_widget
    names = [layer.name for layer in viewer.layers]
    assert names == ["T1 sample brain", "true lesion (synthetic)"]
    image = viewer.layers["T1 sample brain"]
    assert image.data.shape == read_image(SAMPLE_T1).data.shape
    assert tuple(image.scale) == (1.0, 1.0, 1.0)
    assert widget.image.value is image
    assert type(widget).__name__ == "SegmentationWidget"
    from qtpy.QtGui import QKeySequence

    # section titles read as written: no "&" swallowed as a keyboard mnemonic
    assert "Fine-tune & versions" in widget.sections
    for title, section in widget.sections.items():
        text = section.toggleButton().text()
        assert QKeySequence.mnemonic(text).isEmpty(), (title, text)
        assert text.replace("&&", "&") == title


def test_segment_slice_with_file_model_updates_only_that_slice(
    viewer_with_widget, qtbot, tiny_checkpoint
):
    viewer, widget = viewer_with_widget
    widget.model.value = "checkpoint file…"
    widget.model_file.value = tiny_checkpoint
    widget.threshold.value = 0.05  # a random net: make sure some voxels pass
    image = viewer.layers["T1 sample brain"]
    viewer.dims.set_current_step(0, 90)
    widget.slice_button.clicked.emit()
    assert widget.cancel_button.enabled and not widget.volume_button.enabled
    _wait_idle(qtbot, widget)
    labels = viewer.layers["T1 sample brain lesion"]
    prob = viewer.layers["T1 sample brain lesion probability"]
    assert labels.data.shape == image.data.shape
    assert tuple(labels.scale) == tuple(image.scale)
    session = widget.session(image)
    assert session.computed[90].all() and not session.computed[89].any()
    assert prob.data[90].max() > 0 and prob.data[89].max() == 0
    assert labels.data[90].any()
    assert not labels.data[:90].any() and not labels.data[91:].any()
    assert widget.volume_button.enabled and not widget.cancel_button.enabled
    expected_ml = labels.data.astype(bool).sum() / 1000
    qtbot.waitUntil(lambda: f"{expected_ml:.2f} mL" in widget.readout.value, timeout=5000)


def test_threshold_keeps_hand_painted_voxels(viewer_with_widget, qtbot, tiny_checkpoint):
    viewer, widget = viewer_with_widget
    widget.model.value = "checkpoint file…"
    widget.model_file.value = tiny_checkpoint
    viewer.dims.set_current_step(0, 100)
    widget.slice_button.clicked.emit()
    _wait_idle(qtbot, widget)
    labels = viewer.layers["T1 sample brain lesion"]
    session = widget.session(viewer.layers["T1 sample brain"])
    prob = session.probability[100]
    painted = tuple(np.argwhere(prob < 0.5)[:5].T)  # the model said "no": the user paints
    erased = tuple(np.argwhere(prob >= 0.5)[:5].T)  # the model said "yes": the user erases
    assert len(painted[0]) == 5 and len(erased[0]) == 5
    labels.data[100][painted] = 1
    labels.data[100][erased] = 0
    widget.threshold.value = 0.95
    assert labels.data[100][painted].all()
    widget.threshold.value = 0.05
    assert not labels.data[100][erased].any()
    derived = prob >= 0.05
    derived[painted] = True
    derived[erased] = False
    np.testing.assert_array_equal(labels.data[100] > 0, derived)
    assert not labels.data[99].any()  # other slices were never computed: untouched


def test_volume_can_be_cancelled_and_errors_notify(
    viewer_with_widget, qtbot, tiny_checkpoint, monkeypatch
):
    viewer, widget = viewer_with_widget
    errors = []
    monkeypatch.setattr("napari_unet._napari.widget.show_error", errors.append)
    widget.model.value = "checkpoint file…"
    widget.model_file.value = tiny_checkpoint.parent / "missing.safetensors"
    widget.volume_button.clicked.emit()
    assert errors and "missing.safetensors" in errors[-1]
    widget.model_file.value = tiny_checkpoint
    widget.volume_button.clicked.emit()
    widget.cancel_button.clicked.emit()
    _wait_idle(qtbot, widget)
    assert widget.volume_button.enabled
    assert "T1 sample brain lesion" not in viewer.layers  # cancelled: nothing applied


def test_save_mask_writes_source_geometry(viewer_with_widget, qtbot, tiny_checkpoint, tmp_path):
    import nibabel as nib

    viewer, widget = viewer_with_widget
    widget.model.value = "checkpoint file…"
    widget.model_file.value = tiny_checkpoint
    widget.slice_button.clicked.emit()
    _wait_idle(qtbot, widget)
    labels = viewer.layers["T1 sample brain lesion"]
    labels.data[:] = 0
    labels.data[50, 60:70, 80:90] = 1
    widget.export.save_path.value = tmp_path / "sample_lesion.nii.gz"
    widget.export.save_button.clicked.emit()
    written = nib.load(tmp_path / "sample_lesion.nii.gz")
    source = nib.load(SAMPLE_LESION)
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    assert int(np.asarray(written.dataobj).sum()) == 100


def _paint_mask(viewer, widget, qtbot, tiny_checkpoint):
    """Segment once so the lesion layer exists, then replace it with a known mask."""
    widget.model.value = "checkpoint file…"
    widget.model_file.value = tiny_checkpoint
    widget.slice_button.clicked.emit()
    _wait_idle(qtbot, widget)
    labels = viewer.layers["T1 sample brain lesion"]
    labels.data[:] = 0
    return labels


def test_helpers_are_undoable_and_scoped(viewer_with_widget, qtbot, tiny_checkpoint):
    viewer, widget = viewer_with_widget
    labels = _paint_mask(viewer, widget, qtbot, tiny_checkpoint)
    viewer.dims.set_current_step(0, 40)
    labels.data[40, 50:60, 50:60] = 1
    labels.data[40, 55, 55] = 0  # a hole
    labels.data[40, 10, 10] = 1  # a speck
    labels.data[41, 10, 10] = 1  # a speck on another slice
    panel = widget.correction
    panel.scope.value = "current slice"
    panel.min_size.value = 5
    panel.buttons["Remove small lesions"].clicked.emit()
    assert labels.data[40, 10, 10] == 0 and labels.data[41, 10, 10] == 1
    panel.buttons["Fill holes"].clicked.emit()
    assert labels.data[40, 55, 55] == 1
    panel.buttons["Grow 1 voxel"].clicked.emit()
    assert labels.data[40].sum() == 100 + 4 * 10
    labels.undo()
    assert labels.data[40].sum() == 100
    labels.undo()
    assert labels.data[40, 55, 55] == 0
    panel.buttons["Shrink 1 voxel"].clicked.emit()
    assert labels.data[40, 50, 50] == 0 and labels.data[40, 52, 52] == 1
    panel.scope.value = "whole volume"
    panel.min_size.value = 2
    panel.buttons["Remove small lesions"].clicked.emit()
    assert labels.data[41, 10, 10] == 0


def test_copy_and_fill_between_slices(viewer_with_widget, qtbot, tiny_checkpoint):
    viewer, widget = viewer_with_widget
    labels = _paint_mask(viewer, widget, qtbot, tiny_checkpoint)
    labels.data[60, 40:50, 40:50] = 1
    labels.data[70, 40:60, 40:60] = 1
    viewer.dims.set_current_step(0, 61)
    widget.correction.buttons["Copy from previous slice"].clicked.emit()
    np.testing.assert_array_equal(labels.data[61], labels.data[60])
    labels.undo()
    assert not labels.data[61].any()
    viewer.dims.set_current_step(0, 65)
    widget.correction.buttons["Fill between annotated slices"].clicked.emit()
    areas = [int(labels.data[z].sum()) for z in range(60, 71)]
    assert all(a > 0 for a in areas)
    assert areas[0] == 100 and areas[-1] == 400
    assert areas == sorted(areas)  # grows smoothly from the small to the large square
    labels.undo()
    assert not labels.data[61:70].any()


def test_lesion_list_jumps_to_centroid(viewer_with_widget, qtbot, tiny_checkpoint):
    viewer, widget = viewer_with_widget
    labels = _paint_mask(viewer, widget, qtbot, tiny_checkpoint)
    labels.data[30:34, 100:110, 80:90] = 1  # 400 voxels around slice 31.5
    labels.data[120, 20:22, 20:22] = 1
    labels.events.data()
    qtbot.waitUntil(lambda: len(widget.review.list.choices) == 2, timeout=5000)
    assert widget.review.list.choices[0].startswith("#1: 0.40 mL")
    widget.review.list.value = [widget.review.list.choices[0]]
    assert viewer.dims.current_step[0] in (31, 32)
    assert tuple(np.round(camera(viewer).center[-2:])) == (104.0, 84.0)


def test_uncertainty_strip_and_next_slice(viewer_with_widget, qtbot, tiny_checkpoint):
    viewer, widget = viewer_with_widget
    widget.model.value = "checkpoint file…"
    widget.model_file.value = tiny_checkpoint
    widget.review.uncertainty_button.clicked.emit()
    _wait_idle(qtbot, widget, timeout=180_000)
    result = widget.review.result
    depth = viewer.layers["T1 sample brain"].data.shape[0]
    assert result is not None and result.per_slice_mm2.shape == (depth,)
    assert "uncertainty per slice" in widget.review.strip_label.value or "agrees" in (
        widget.review.strip_label.value
    )
    if result.most_uncertain() is not None:
        widget.review.next_button.clicked.emit()
        assert viewer.dims.current_step[0] == result.most_uncertain()


def test_a_half_millimetre_layer_is_segmented_at_the_model_spacing(viewer_with_widget, qtbot):
    """The widget reads the layer's scale: a 0.5 mm scan runs at the model's 1 mm pixels
    and the answer lands on the layer's own voxels."""
    from napari_unet.core.metrics import dice
    from napari_unet.core.spacing import resample_inplane

    viewer, widget = viewer_with_widget
    t1 = read_image(SAMPLE_T1).data
    truth = read_image(SAMPLE_LESION).data > 0
    shape = (2 * t1.shape[1], 2 * t1.shape[2])
    half = viewer.add_image(resample_inplane(t1, shape), name="half mm", scale=(1.0, 0.5, 0.5))
    half_truth = resample_inplane(truth, shape) >= 0.5
    widget.image.value = half
    z = int(np.argmax(half_truth.sum(axis=(1, 2))))
    viewer.dims.set_current_step(0, z)
    widget.slice_button.clicked.emit()
    _wait_idle(qtbot, widget)
    labels = viewer.layers["half mm lesion"]
    assert labels.data.shape == half.data.shape and tuple(labels.scale) == (1.0, 0.5, 0.5)
    assert dice(labels.data[z] > 0, half_truth[z]) > 0.85


def test_segment_visible_region_only_touches_what_is_on_screen(
    viewer_with_widget, qtbot, tiny_checkpoint
):
    viewer, widget = viewer_with_widget
    widget.model.value = "checkpoint file…"
    widget.model_file.value = tiny_checkpoint
    viewer.dims.set_current_step(0, 96)
    camera(viewer).center = (96, 60, 50)
    camera(viewer).zoom = 8.0
    widget.region_button.clicked.emit()
    _wait_idle(qtbot, widget)
    session = widget.session(viewer.layers["T1 sample brain"])
    computed = session.computed[96]
    rows, cols = np.nonzero(computed)
    shape = viewer.layers["T1 sample brain"].data.shape
    assert computed.any() and not session.computed[95].any()
    assert 0 < computed.sum() < 0.5 * shape[1] * shape[2]  # only part of the slice
    assert rows.min() <= 60 <= rows.max() and cols.min() <= 50 <= cols.max()
    height, width = viewer.window._qt_viewer.canvas.size
    assert rows.max() - rows.min() <= height / 8 + 2 and cols.max() - cols.min() <= width / 8 + 2


def test_queue_correction_from_the_widget(viewer_with_widget, qtbot, tiny_checkpoint, tmp_path):
    viewer, widget = viewer_with_widget
    panel = widget.queue_panel
    panel.workspace.value = tmp_path / "ws"
    labels = _paint_mask(viewer, widget, qtbot, tiny_checkpoint)
    viewer.dims.set_current_step(0, 90)
    labels.data[89:92, 100:110, 90:100] = 1
    panel.span.value = 1
    panel.split.value = "val"
    panel.note.value = "reviewed"
    panel.queue_button.clicked.emit()
    items = panel.queue.items()
    assert [i.slice_index for i in items] == [89, 90, 91]
    assert {i.split for i in items} == {"val"} and items[0].note == "reviewed"
    assert items[0].source_path.endswith("sample_t1.nii.gz")
    assert panel.counts.value == "0 train, 3 val"
    assert len(panel.list.choices) == 3
    assert not panel.list.native.item(0).icon().isNull()  # a thumbnail per item
    np.testing.assert_array_equal(panel.queue.arrays(items[1])["mask"], labels.data[90])
    panel.list.value = [panel.list.choices[0]]
    panel.remove_button.clicked.emit()
    assert panel.counts.value == "0 train, 2 val"
    panel.restore_button.clicked.emit()
    assert panel.counts.value == "0 train, 3 val"
    panel.list.value = [panel.list.choices[2]]
    panel.move_button.clicked.emit()
    assert panel.counts.value == "1 train, 2 val"
    viewer.dims.set_current_step(0, 10)
    panel.list.value = [panel.list.choices[0]]
    panel.open_button.clicked.emit()
    assert viewer.dims.current_step[0] == 89


def test_autosave_restores_edits_after_a_crash(make_napari_viewer, qtbot, tmp_path):
    from napari_unet.core.autosave import Autosaver
    from napari_unet.core.edit_queue import file_sha256
    from napari_unet.core.workspace import default_workspace

    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "stroke_t1")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Lesion segmentation")
    source = viewer.layers["T1 sample brain"]
    labels = widget.lesion_layer(source)
    labels.data_setitem((np.array([50, 50]), np.array([60, 61]), np.array([70, 70])), 1)
    widget.queue_panel.autosave()  # the truth layer shares the source but is never autosaved
    saved = Autosaver(default_workspace()).path(file_sha256(SAMPLE_T1))
    qtbot.waitUntil(saved.exists, timeout=60_000)  # compressing 8 MB: generous under load
    # "crash": a new viewer opens the same image; the edits come back, undoable
    viewer.layers.clear()
    viewer.open_sample("napari-unet", "stroke_t1")
    restored = viewer.layers["T1 sample brain lesion"]
    assert int(restored.data.sum()) == 2 and restored.data[50, 61, 70] == 1
    restored.undo()
    assert int(restored.data.sum()) == 0


def test_worker_callbacks_are_dropped_once_the_dock_is_closed(viewer_with_widget):
    """A worker result arriving after its dock is gone must not touch deleted widgets.

    (CI saw ``QLabel has been deleted`` from the readout worker at a viewer's teardown.)
    """
    from qtpy import sip

    from napari_unet._napari.qt_helpers import qt_alive, while_open

    _, widget = viewer_with_widget
    calls = []
    late = while_open(widget.native, calls.append)
    late("open")
    sip.delete(widget.native)
    assert not qt_alive(widget.native)
    assert late("closed") is None
    assert calls == ["open"]


def test_finetune_compare_and_roll_back_from_the_widget(viewer_with_widget, qtbot, tmp_path):
    viewer, widget = viewer_with_widget
    widget.queue_panel.workspace.value = tmp_path / "ws"
    source = viewer.layers["T1 sample brain"]
    truth = viewer.layers["true lesion (synthetic)"].data
    labels = widget.lesion_layer(source)
    labels.data[:] = truth
    lesion_slices = np.flatnonzero(truth.sum(axis=(1, 2)) > 100)
    for split, index in (
        ("train", lesion_slices[0]),
        ("train", lesion_slices[4]),
        ("val", lesion_slices[2]),
        ("val", lesion_slices[3]),
    ):
        viewer.dims.set_current_step(0, int(index))
        widget.queue_panel.split.value = split
        widget.queue_panel.queue_button.clicked.emit()
    panel = widget.models_panel
    panel.steps.value = 3
    panel.promote.value = "force"
    panel.finetune_button.clicked.emit()
    assert not panel.finetune_button.enabled
    _wait_idle(qtbot, widget, timeout=120_000)
    assert "promoted" in panel.comparison.value and "Dice" in panel.comparison.value
    assert "over 2 items" in panel.comparison.value  # the paired per-item interval
    assert len(panel.versions.choices) == 2 and panel.versions.choices[1].startswith("●")
    curve = panel.curve.value
    assert curve.shape[:2] == (110, 300)
    marker = (curve == (255, 200, 60)).all(axis=-1)
    assert marker[:, :148].any() and marker[:, 152:].any()  # vs items and vs minutes
    panel.versions.value = [panel.versions.choices[0]]  # the bundled root
    panel.activate_button.clicked.emit()
    assert panel.versions.choices[0].startswith("●")  # rolled back in one click
    panel.versions.value = [panel.versions.choices[1]]
    viewer.dims.set_current_step(0, int(lesion_slices[2]))
    panel.changes_button.clicked.emit()
    _wait_idle(qtbot, widget)
    changes = viewer.layers["T1 sample brain what changed"].data
    assert set(np.unique(changes)) <= {0, 1, 2}
    assert not changes[: int(lesion_slices[2])].any()
    widget.model.value = "workspace: active version"
    widget.slice_button.clicked.emit()
    _wait_idle(qtbot, widget)
    assert widget.session(source).computed[int(lesion_slices[2])].all()


def test_clicks_through_the_points_layer_update_labels(viewer_with_widget, qtbot, tmp_path):
    viewer, widget = viewer_with_widget
    truth = viewer.layers["true lesion (synthetic)"].data
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    rows, cols = np.nonzero(truth[z])
    k = len(rows) // 2
    viewer.dims.set_current_step(0, z)
    widget.click_panel.engine_choice.value = "baseline: automatic model"
    points = widget.click_panel.start()
    assert points.mode == "add"
    widget.lesion_layer(viewer.layers["T1 sample brain"])  # a new layer does update the dims
    ranges = viewer.dims.range
    recomputed = []  # napari's dims recompute, which a click on the image cannot change
    update = viewer._on_layers_change
    viewer._on_layers_change = lambda *args: recomputed.append(1) or update(*args)
    points.add([z, rows[k], cols[k]])  # a positive click inside the true lesion
    del viewer._on_layers_change
    assert recomputed == [] and viewer.dims.range == ranges
    labels = viewer.layers["T1 sample brain lesion"]
    assert labels.data[z, rows[k], cols[k]] == 1
    captured = int(labels.data[z].sum())
    assert captured > 50 and not labels.data[z - 1].any()
    widget.click_panel.polarity.value = "not lesion (−)"
    points.add([z, rows[k], cols[k]])  # a negative click on the same component removes it
    assert labels.data[z, rows[k], cols[k]] == 0
    labels.undo()  # clicks are undoable
    assert int(labels.data[z].sum()) == captured
    assert [c["positive"] for c in widget.click_provenance()[z]] == [True, False]
    widget.queue_panel.workspace.value = tmp_path / "ws"
    widget.queue_panel.queue_button.clicked.emit()
    item = widget.queue_panel.queue.items()[0]
    assert item.clicks and item.clicks[0]["row"] == int(rows[k])
    widget.click_panel.clear_button.clicked.emit()
    assert not labels.data[z].any() and len(points.data) == 0
    points = widget.click_panel.start()  # starting again after clear works
    widget.click_panel.polarity.value = "lesion here (+)"
    points.add([z, rows[k], cols[k]])
    assert labels.data[z, rows[k], cols[k]] == 1


def test_click_guided_engine_through_the_widget(viewer_with_widget, qtbot):
    """The default click engine is the bundled click-guided U-Net."""
    from napari_unet.core.click_maps import first_click
    from napari_unet.core.metrics import dice

    viewer, widget = viewer_with_widget
    truth = viewer.layers["true lesion (synthetic)"].data > 0
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    row, col, _ = first_click(truth[z])
    viewer.dims.set_current_step(0, z)
    labels = widget.lesion_layer(viewer.layers["T1 sample brain"])
    labels.data[z, 5:9, 5:9] = 1  # painted by hand before clicking
    points = widget.click_panel.start()
    assert widget.click_panel.engine_choice.value == "click-guided U-Net"
    points.add([z, row, col])
    engine = next(iter(widget.click_panel.engines.values()))
    inner, grid = engine.engine_for(0)
    assert type(inner).__name__ == "GuidedClickEngine" and grid is None  # 1 mm: as it is
    assert engine.predictor.bundle.click_channels == 2
    assert dice(labels.data[z] > 0, truth[z]) > 0.7  # one click gets most of the lesion
    assert labels.data[z, 5:9, 5:9].all()  # the brush stroke is untouched
    widget.click_panel.polarity.value = "not lesion (−)"
    points.add([z, 6, 6])  # an explicit "not lesion" on the stroke removes it
    assert not labels.data[z, 5:9, 5:9].any() and labels.data[z, row, col] == 1
    labels.undo()
    assert labels.data[z, 5:9, 5:9].all()
    # clicks use the click model's own threshold until the user moves the slider
    panel = widget.click_panel
    bundle = engine.predictor.bundle
    assert panel.threshold_for(engine) == bundle.threshold == get_model(CLICK_MODEL).threshold
    shipped = bundle.threshold
    try:  # a model threshold unlike the slider's shows which one is read
        bundle.threshold = 0.62
        assert widget.threshold.value != 0.62 and panel.threshold_for(engine) == 0.62
    finally:
        bundle.threshold = shipped
    widget.threshold.value = 0.45
    assert panel.threshold_for(engine) == 0.45


def test_extra_image_layers_as_channels(viewer_with_widget, qtbot, tmp_path, tiny_bundle):
    """A two-channel model gets the chosen image layers, in order, as its channels."""
    from napari_unet.core.checkpoint import ModelBundle
    from napari_unet.core.unet import UNet, UNetConfig

    viewer, widget = viewer_with_widget
    image = viewer.layers["T1 sample brain"]
    second = viewer.add_image(np.asarray(image.data) * 0.5, name="second channel")
    config = UNetConfig.from_dict({**tiny_bundle.config.to_dict(), "in_channels": 2})
    torch.manual_seed(0)
    bundle = ModelBundle(UNet(config).eval(), config, tiny_bundle.normalization, "two-ch")
    path = save_checkpoint(bundle, tmp_path / "two.safetensors")
    widget.image.value = image
    widget.model.value = "checkpoint file…"
    widget.model_file.value = path
    viewer.dims.set_current_step(0, 90)
    widget.slice_button.clicked.emit()  # one channel selected for a two-channel model
    assert widget.worker is None  # refused before any work started
    widget.extra_channels.value = [second]
    predictor = widget._predictor()
    assert widget.input_data(image, predictor).shape == (2, *image.data.shape)
    widget.slice_button.clicked.emit()
    _wait_idle(qtbot, widget)
    prob_layer = viewer.layers["T1 sample brain lesion probability"]
    prob = prob_layer.data
    assert prob[90].max() > 0 and not prob[89].any()
    assert prob_layer.metadata["napari_unet_role"] == "probability"  # never restored into
    widget.extra_channels.reset_choices()
    assert prob_layer not in widget.extra_channels.choices  # not offered as a scan channel
    assert second in widget.extra_channels.choices
    assert not any(layer.name.endswith("probability lesion") for layer in viewer.layers)
    wrong = viewer.add_image(np.zeros((10, 10, 10), np.float32), name="other grid")
    widget.extra_channels.value = [wrong]
    with pytest.raises(ValueError, match="not on the grid"):
        widget.input_data(image, predictor)


def test_bundled_model_finds_the_sample_lesion(viewer_with_widget, qtbot):
    """The real default model, through the real widget: the headless pipeline's mask, voxel
    for voxel, and the lesion found (the model card's sample-brain figures: Dice 0.888,
    63.57 mL against 60.25 mL)."""
    from napari_unet.core.inference import Predictor
    from napari_unet.core.metrics import dice
    from napari_unet.core.pipeline import binarize

    viewer, widget = viewer_with_widget
    truth = viewer.layers["true lesion (synthetic)"].data > 0
    image = viewer.layers["T1 sample brain"]
    widget.volume_button.clicked.emit()
    _wait_idle(qtbot, widget, timeout=300_000)
    mask = viewer.layers["T1 sample brain lesion"].data > 0
    bundle = get_model(None)
    headless = binarize(
        Predictor(bundle).predict_volume(np.asarray(image.data), axis=0),
        bundle,
        spacing=tuple(image.scale[-3:]),
    )
    assert np.array_equal(mask, headless > 0)  # the widget adds nothing and loses nothing
    assert dice(mask, truth) >= 0.80
    true_ml = truth.sum() / 1000
    assert abs(mask.sum() / 1000 - true_ml) <= 0.10 * true_ml  # volume within 10 %
    qtbot.waitUntil(lambda: f"{mask.sum() / 1000:.2f} mL" in widget.readout.value, timeout=5000)


def test_current_slice_with_a_25d_model_reads_its_neighbours(
    viewer_with_widget, qtbot, tmp_path, tiny_bundle
):
    """A 2.5D model segments the current slice exactly as it does inside the volume."""
    from napari_unet.core.checkpoint import ModelBundle
    from napari_unet.core.inference import Predictor
    from napari_unet.core.unet import UNet, UNetConfig

    viewer, widget = viewer_with_widget
    image = viewer.layers["T1 sample brain"]
    config = UNetConfig.from_dict({**tiny_bundle.config.to_dict(), "in_channels": 5})
    torch.manual_seed(0)
    model = UNet(config).eval()
    with torch.no_grad():  # make the neighbours matter a lot
        model.state_dict()["inc.0.weight"][:, [0, 1, 3, 4]] *= 20
    bundle = ModelBundle(model, config, tiny_bundle.normalization, "ctx", context_slices=2)
    path = save_checkpoint(bundle, tmp_path / "ctx.safetensors")
    widget.image.value = image
    widget.model.value = "checkpoint file…"
    widget.model_file.value = path
    viewer.dims.set_current_step(0, 90)
    widget.slice_button.clicked.emit()
    _wait_idle(qtbot, widget)
    got = viewer.layers["T1 sample brain lesion probability"].data[90]
    reference = Predictor(bundle)
    data = np.asarray(image.data, np.float32)
    expected = reference.predict_volume(data)[90]
    lone = reference.predict_slice(data[90], reference.fit_stats(data, 3))
    assert np.abs(got - expected).max() < 0.02
    assert np.abs(lone - expected).max() > 0.1  # the neighbours do change the answer
