"""The real widget, loaded through the plugin manifest, driven under Xvfb."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import save_checkpoint
from napari_unet.core.io import read_image
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
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "stroke_t1")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Lesion segmentation")
    return viewer, widget


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
    assert "mL" in widget.readout.value


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
    widget.save_path.value = tmp_path / "sample_lesion.nii.gz"
    widget.save_button.clicked.emit()
    written = nib.load(tmp_path / "sample_lesion.nii.gz")
    source = nib.load(SAMPLE_LESION)
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine, source.affine)
    assert int(np.asarray(written.dataobj).sum()) == 100
