"""The lesion segmentation dock widget: pick image and model, segment, threshold, read out, save.

All network work runs in napari ``thread_worker``s over the core's progress
generators; results are applied on the GUI thread. Errors become napari
notifications.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSlider,
    Label,
    PushButton,
    Select,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QSizePolicy

from ..core.editing import lesion_table
from ..core.finetune import warm_up_training
from ..core.models import BUNDLED, DEFAULT_MODEL
from ..core.session import SegmentationSession
from ..core.spacing import inplane_spacing
from ..core.uncertainty import iter_flip_uncertainty
from .click_panel import NEGATIVE, POSITIVE, ClickPanel
from .correction_panel import CorrectionPanel
from .export_panel import ExportPanel
from .inputs import FILE_CHOICE, WORKSPACE_CHOICE, InputSelection
from .layers import META_KEY, ROLE_KEY
from .models_panel import ModelsPanel
from .qt_helpers import (
    PendingLabels,
    add_sections,
    count_slices,
    grow,
    relative,
    single_shot_timer,
    while_open,
)
from .queue_panel import QueuePanel
from .review_panel import ReviewPanel
from .view import current_slice, visible_box, voxel_spacing

log = logging.getLogger(__name__)
CONTEXT = 32  # pixels of context around the visible region


class SegmentationWidget(InputSelection, Container):
    """Dock widget: segment the current slice, the visible region or the whole volume."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self._init_inputs()
        self.sessions: dict[int, SegmentationSession] = {}
        self.worker = None

        self.image = ComboBox(label="image", choices=self._image_layers)
        self.extra_channels = Select(
            label="extra channels",
            choices=self._image_layers,
            value=[],
            tooltip="For multi-channel models: other image layers (same grid) given to the "
            "model as channels 2, 3, … in the order the model was trained with",
        )
        self.extra_channels.max_height = 56  # a short list: most models take one channel
        self.model = ComboBox(
            label="model", choices=[*BUNDLED, WORKSPACE_CHOICE, FILE_CHOICE], value=DEFAULT_MODEL
        )
        self.model_file = FileEdit(label="checkpoint", filter="*.safetensors", visible=False)
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.slice_button = PushButton(text="Segment current slice [Alt+S]")
        self.region_button = PushButton(text="Segment visible region [Alt+R]")
        self.volume_button = PushButton(text="Segment volume [Alt+V]")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.threshold = FloatSlider(label="threshold", min=0.05, max=0.95, step=0.05, value=0.5)
        self.readout = Label(label="lesion", value="no segmentation yet")
        self.slice_readout = Label(label="this slice", value="")
        self.correction = CorrectionPanel(viewer, self._active_lesion_layer)
        self.review = ReviewPanel(viewer, self.estimate_uncertainty, self.next_uncertain_slice)
        self.queue_panel = QueuePanel(self)
        self.models_panel = ModelsPanel(self)
        self.click_panel = ClickPanel(self)
        self._readout_timer = single_shot_timer(250, self._update_readout_now, self.native)
        # PyTorch's first optimizer step imports ~1 s of modules while holding the GIL; done
        # once right after the dock appears, it cannot stall a fine-tune later (docs/performance)
        self._warm_up_timer = single_shot_timer(0, warm_up_training, self.native)
        self._warm_up_timer.start()
        self.extend(
            [
                self.image,
                self.extra_channels,
                self.model,
                self.model_file,
                self.device,
                self.slice_button,
                self.region_button,
                self.volume_button,
                self.cancel_button,
                self.threshold,
                self.readout,
                self.slice_readout,
            ]
        )
        # a list widget expands vertically by default, which spreads the dock apart
        for widget in (self.extra_channels.native, self.extra_channels.native.parentWidget()):
            if widget is not None:
                widget.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.export = ExportPanel(self)
        self.sections = add_sections(
            self,
            {
                "Click": self.click_panel,
                "Correct": self.correction,
                "Review": self.review,
                "Queue": self.queue_panel,
                "Fine-tune & versions": self.models_panel,
                "Export": self.export,
            },
        )

        self.model.changed.connect(lambda v: setattr(self.model_file, "visible", v == FILE_CHOICE))
        self.slice_button.changed.connect(self.segment_slice)
        self.region_button.changed.connect(self.segment_region)
        self.volume_button.changed.connect(self.segment_volume)
        self.cancel_button.changed.connect(self.cancel)
        self.threshold.changed.connect(self._threshold_changed)
        viewer.layers.events.inserted.connect(self._reset_choices)
        viewer.layers.events.inserted.connect(self._restore_autosave)
        viewer.layers.events.removed.connect(self._reset_choices)
        viewer.dims.events.current_step.connect(self._update_slice_readout)
        self.native.destroyed.connect(self._disconnect)
        for layer in list(viewer.layers):  # images opened before the widget
            self._restore_autosave(SimpleNamespace(value=layer))
        for key, action in (
            ("Alt-S", self.segment_slice),
            ("Alt-R", self.segment_region),
            ("Alt-V", self.segment_volume),
            ("Alt-N", self.next_uncertain_slice),
            ("Alt-P", self._toggle_click_polarity),
            ("Alt-Q", lambda: self._guarded(self.queue_panel.queue_current)),
        ):
            viewer.bind_key(key, lambda _v, action=action: action(), overwrite=True)

    def _toggle_click_polarity(self) -> None:
        polarity = self.click_panel.polarity
        polarity.value = NEGATIVE if polarity.value == POSITIVE else POSITIVE

    def click_provenance(self) -> dict[int, list]:
        return self.click_panel.provenance()

    def _reset_choices(self, _event=None) -> None:
        try:
            self.image.reset_choices()
            self.extra_channels.reset_choices()
        except RuntimeError:  # the Qt side is gone (dock closed): stop listening
            self._disconnect()

    def _disconnect(self, _object=None) -> None:
        """The dock widget was closed: stop listening to the viewer."""
        self.viewer.layers.events.inserted.disconnect(self._reset_choices)
        self.viewer.layers.events.inserted.disconnect(self._restore_autosave)
        self.viewer.layers.events.removed.disconnect(self._reset_choices)
        self.viewer.dims.events.current_step.disconnect(self._update_slice_readout)

    # -- layers -----------------------------------------------------------------------
    def lesion_layer(self, source: napari.layers.Image) -> napari.layers.Labels:
        name = f"{source.name} lesion"
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        layer = self.viewer.add_labels(
            np.zeros(source.data.shape, dtype=np.uint8),
            name=name,
            scale=source.scale,
            translate=source.translate,
            metadata={**source.metadata, ROLE_KEY: "lesion"},
            opacity=0.6,
        )
        layer.events.data.connect(lambda _e: self._update_readout())
        layer.events.paint.connect(lambda _e: self._update_readout())
        self.viewer.layers.selection.active = source
        return layer

    def _restore_autosave(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if not isinstance(layer, napari.layers.Image) or META_KEY not in layer.metadata:
            return
        if layer.metadata.get(ROLE_KEY):  # our own outputs (probabilities) are not scans
            return
        try:
            if self.queue_panel.restore_autosave(layer, PendingLabels(self, layer)):
                self._update_readout()
        except Exception as exc:  # noqa: BLE001 - never lose the chance to tell the user
            show_error(f"napari-unet: could not restore the autosave: {exc}")

    def _active_lesion_layer(self) -> napari.layers.Labels:
        source = self._source()
        name = f"{source.name} lesion"
        if name not in self.viewer.layers:
            raise ValueError("There is no lesion mask yet: segment, or paint one first")
        return self.viewer.layers[name]

    def probability_layer(self, source: napari.layers.Image) -> napari.layers.Image:
        name = f"{source.name} lesion probability"
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        session = self.session(source)
        layer = self.viewer.add_image(
            session.probability,
            name=name,
            scale=source.scale,
            translate=source.translate,
            metadata={**source.metadata, ROLE_KEY: "probability"},
            colormap="magma",
            contrast_limits=(0, 1),
            opacity=0.4,
            visible=False,
        )
        return layer

    def session(self, source: napari.layers.Image) -> SegmentationSession:
        key = id(source)
        if key not in self.sessions:
            self.sessions[key] = SegmentationSession(tuple(source.data.shape), self.threshold.value)
        return self.sessions[key]

    # -- actions ----------------------------------------------------------------------
    def segment_slice(self) -> None:
        self._guarded(lambda: self._segment_2d(visible_only=False))

    def segment_region(self) -> None:
        self._guarded(lambda: self._segment_2d(visible_only=True))

    def segment_volume(self) -> None:
        self._guarded(self._segment_volume)

    def _guarded(self, action) -> None:
        if self.worker is not None:
            show_info("Segmentation is already running; wait or cancel it")
            return
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user
            log.exception("segmentation failed")
            show_error(f"napari-unet: {exc}")

    def _segment_2d(self, visible_only: bool) -> None:
        source = self._source()
        axis, index = current_slice(self.viewer, source)
        predictor = self._predictor()
        self.session(source)
        data = self.input_data(source, predictor)
        # the slice with the neighbours a 2.5D model reads (just the slice otherwise)
        voxel_mm = voxel_spacing(source)
        image = predictor.volume_slab(np.asarray(data), index, axis, voxel_mm).astype(np.float32)
        rows, cols = slice(None), slice(None)
        if visible_only:
            rows, cols = visible_box(self.viewer, source, axis)
        stats = self._stats(source, predictor)
        height, width = image.shape[-2:]
        context_rows = grow(rows, CONTEXT, height)
        context_cols = grow(cols, CONTEXT, width)
        pixel_mm = inplane_spacing(voxel_mm, axis)

        def work():
            crop = image[..., context_rows, context_cols]
            prob = predictor.predict_slice(crop, stats, spacing=pixel_mm)
            inner_r = relative(rows, context_rows, height)
            inner_c = relative(cols, context_cols, width)
            return prob[inner_r, inner_c]

        region = [slice(None)] * 3
        region[axis] = slice(index, index + 1)
        other = [a for a in range(3) if a != axis]
        region[other[0]], region[other[1]] = rows, cols

        def apply(prob: np.ndarray) -> None:
            self._apply(source, tuple(region), np.expand_dims(prob, axis))

        self._start(work, apply, total=0, description=f"segmenting slice {index}")

    def _segment_volume(self) -> None:
        source = self._source()
        predictor = self._predictor()
        session = self.session(source)
        session.min_lesion_voxels = predictor.bundle.min_lesion_voxels
        session.min_lesion_extent_mm = predictor.bundle.min_lesion_extent_mm
        session.grow_threshold = predictor.bundle.grow_threshold
        session.lesion_filter = predictor.bundle.lesion_filter
        session.spacing = voxel_spacing(source)
        data = self.input_data(source, predictor)

        def work():
            # everything heavy happens here, off the GUI thread: statistics, inference,
            # threshold and the 3D component filter
            volume = np.asarray(data, dtype=np.float32)
            stats = self._stats(source, predictor)
            prob = yield from count_slices(
                predictor.iter_predict_volume(volume, 0, stats, spacing=session.spacing)
            )
            return prob, session.derive(prob)

        def apply(result) -> None:
            prob, derived = result
            self._apply(source, (slice(None),) * 3, prob, derived)

        self._start(work, apply, total=data.shape[-3], description="segmenting volume")

    def _start(self, work, apply, total: int, description: str) -> None:
        worker = create_worker(work, _progress={"total": total, "desc": description})
        worker.returned.connect(while_open(self.native, apply))
        worker.errored.connect(lambda exc: show_error(f"napari-unet: {exc}"))
        worker.finished.connect(while_open(self.native, self._finished))
        self.worker = worker
        self._set_running(True)
        worker.start()

    def cancel(self) -> None:
        if self.worker is not None:
            self.worker.quit()
            show_info("napari-unet: cancelling…")

    def _finished(self) -> None:
        self.worker = None
        self._set_running(False)

    def _set_running(self, running: bool) -> None:
        for button in (
            self.slice_button,
            self.region_button,
            self.volume_button,
            self.export.save_button,
            self.export.save_prob_button,
            self.models_panel.finetune_button,
        ):
            button.enabled = not running
        self.cancel_button.enabled = running

    def _apply(self, source, region, prob: np.ndarray, derived: np.ndarray | None = None) -> None:
        labels = self.lesion_layer(source)
        session = self.session(source)
        session.add_probabilities(prob, region, labels.data, derived)
        labels.refresh()
        self.probability_layer(source).refresh()
        self._update_readout()

    def _threshold_changed(self, value: float) -> None:
        self._threshold_moved = True
        source = self.image.value
        if source is None or id(source) not in self.sessions:
            return
        labels = self.lesion_layer(source)
        if self.sessions[id(source)].set_threshold(value, labels.data) is not None:
            labels.refresh()
            self._update_readout()

    # -- readouts and export ----------------------------------------------------------
    def _update_readout(self) -> None:
        """Debounced: painting fires many events, the readouts follow within 250 ms."""
        self._readout_timer.start()

    def _update_readout_now(self) -> None:
        """Volume, lesion count and lesion list, computed in a worker (3D labelling is slow)."""
        source = self.image.value
        if source is None or f"{source.name} lesion" not in self.viewer.layers:
            return
        layer = self.viewer.layers[f"{source.name} lesion"]
        mask = np.asarray(layer.data) > 0  # a snapshot: painting may go on meanwhile
        spacing = tuple(source.scale[-3:])

        def work():
            return mask.sum() * float(np.prod(spacing)) / 1000.0, lesion_table(mask, spacing)

        def show(result) -> None:
            volume_ml, lesions = result
            self.readout.value = f"{volume_ml:.2f} mL in {len(lesions)} lesion(s)"
            self.review.show_lesions(layer, lesions)
            self._update_slice_readout()

        worker = create_worker(work)
        worker.returned.connect(while_open(self.native, show))
        worker.errored.connect(lambda exc: show_error(f"napari-unet: {exc}"))
        worker.start()

    # -- review -----------------------------------------------------------------------
    def estimate_uncertainty(self) -> None:
        self._guarded(self._estimate_uncertainty)

    def _estimate_uncertainty(self) -> None:
        source = self._source()
        predictor = self._predictor()
        volume = np.asarray(self.input_data(source, predictor), dtype=np.float32)
        stats = self._stats(source, predictor)
        spacing = tuple(source.scale[-3:])
        threshold = self.threshold.value

        def work():
            return (
                yield from count_slices(
                    iter_flip_uncertainty(predictor, volume, 0, spacing, threshold, stats)
                )
            )

        self._start(
            work,
            lambda result: self.review.show_uncertainty(result, 0),
            total=2 * volume.shape[-3],
            description="flip-test uncertainty",
        )

    def next_uncertain_slice(self) -> None:
        result = self.review.result
        if result is None:
            show_info("napari-unet: estimate the uncertainty first")
            return
        index = result.most_uncertain(self.review.visited)
        if index is None:
            show_info("napari-unet: no uncertain slice left")
            return
        self.review.visited.add(index)
        self.viewer.dims.set_current_step(self.viewer.dims.not_displayed[0], index)

    def _update_slice_readout(self, _event=None) -> None:
        source = self.image.value
        if source is None or f"{source.name} lesion" not in self.viewer.layers:
            return
        try:
            axis, index = current_slice(self.viewer, source)
        except ValueError:
            return
        mask = np.take(self.viewer.layers[f"{source.name} lesion"].data, index, axis=axis) > 0
        pixel_mm2 = float(np.prod([s for a, s in enumerate(source.scale[-3:]) if a != axis]))
        self.slice_readout.value = f"slice {index}: {mask.sum() * pixel_mm2:.0f} mm²"
