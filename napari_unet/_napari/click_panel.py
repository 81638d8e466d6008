"""Point-and-click: a Points layer whose new points are positive or negative clicks."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.utils.notifications import show_error

from ..core.click_spacing import ResampledClicks
from ..core.clicks import Click, ClickEngine
from ..core.guided import GuidedClickEngine
from ..core.models import CLICK_MODEL
from .correction_panel import apply_undoable
from .view import current_slice, skip_dims_update_on_data, voxel_spacing

POSITIVE, NEGATIVE = "lesion here (+)", "not lesion (−)"
GUIDED, BASELINE = "click-guided U-Net", "baseline: automatic model"
COLOURS = {True: "lime", False: "red"}


class ClickPanel(Container):
    def __init__(self, owner) -> None:
        super().__init__(labels=True, label="clicks")
        self.owner = owner
        self.viewer = owner.viewer
        self.start_button = PushButton(text="Start clicking on lesions")
        self.polarity = ComboBox(label="next click", choices=[POSITIVE, NEGATIVE], value=POSITIVE)
        self.engine_choice = ComboBox(label="engine", choices=[GUIDED, BASELINE], value=GUIDED)
        self.clear_button = PushButton(text="Clear clicks (undo their changes)")
        self.status = Label(value="")
        self.extend(
            [self.start_button, self.polarity, self.engine_choice, self.clear_button, self.status]
        )
        self.engines: dict[tuple, ResampledClicks] = {}
        self.clicks: list[Click] = []
        self._before: dict[tuple[int, int], np.ndarray] = {}  # (axis, index) -> mask pre-clicks
        self.layer = None
        self.start_button.changed.connect(lambda _v=None: self.owner._guarded(self.start))
        self.clear_button.changed.connect(lambda _v=None: self.owner._guarded(self.clear))
        self.polarity.changed.connect(self._polarity_changed)

    def start(self):
        source = self.owner._source()
        name = f"{source.name} clicks"
        if name not in self.viewer.layers:
            self.layer = self.viewer.add_points(
                np.empty((0, 3)),
                name=name,
                scale=source.scale,
                translate=source.translate,
                size=4,
                border_width=0,
                face_color=COLOURS[True],
            )
            self.layer.events.data.connect(self._on_points)
            skip_dims_update_on_data(self.viewer, self.layer)
        self.layer = self.viewer.layers[name]
        self.layer.mode = "add"
        self.viewer.layers.selection.active = self.layer
        self._polarity_changed(self.polarity.value)
        self.status.value = "click on the scan: green = lesion, red = not lesion (Ctrl+Z undoes)"
        return self.layer

    def _polarity_changed(self, value) -> None:
        if self.layer is not None:
            # setting the current colour recolours *selected* points: earlier clicks keep theirs
            self.layer.selected_data = set()
            self.layer.current_face_color = COLOURS[value == POSITIVE]

    def engine(self, source) -> ResampledClicks:
        """The chosen engine for ``source``, built once per image and model."""
        predictor = self.owner._predictor()
        guided = self.engine_choice.value == GUIDED
        if guided and not predictor.bundle.click_channels:
            # the selected model is automatic: clicks go to the bundled click-guided model
            predictor = self.owner.models.get(CLICK_MODEL, self.owner.device.value)
        channels = tuple(id(layer) for layer in self.owner._channel_layers(source))
        key = (channels, predictor.bundle.version_id, guided)
        if key not in self.engines:
            # the engine runs at the model's pixel spacing (core/click_spacing.py)
            self.engines[key] = ResampledClicks(
                GuidedClickEngine if guided else ClickEngine,
                predictor,
                np.asarray(self.owner.input_data(source, predictor)),
                self.owner._stats(source, predictor),
                spacing=voxel_spacing(source),
            )
        return self.engines[key]

    def threshold_for(self, engine: ResampledClicks) -> float:
        """The slider's value once the user has moved it; else the engine's model's own."""
        if self.owner._threshold_moved:
            return float(self.owner.threshold.value)
        return float(engine.predictor.bundle.threshold)

    def _on_points(self, event) -> None:
        if str(getattr(event, "action", "added")) not in ("added", "ActionType.ADDED"):
            return
        indices = getattr(event, "data_indices", None) or (len(self.layer.data) - 1,)
        for index in indices:
            try:
                self.handle_point(self.layer.data[index])
            except Exception as exc:  # noqa: BLE001 - report, never swallow
                show_error(f"napari-unet: {exc}")

    def handle_point(self, point_data) -> None:
        """Turn one new point (in the points layer's data coordinates) into a click."""
        source = self.owner._source()
        world = self.layer.data_to_world(point_data)
        coords = np.round(source.world_to_data(world)).astype(int)
        axis, index = current_slice(self.viewer, source)
        row, col = [int(coords[a]) for a in range(3) if a != axis]
        click = Click(axis, index, row, col, self.polarity.value == POSITIVE)
        labels = self.owner.lesion_layer(source)
        region = [slice(None)] * 3
        region[axis] = index
        current = np.asarray(labels.data[tuple(region)])
        self._before.setdefault((axis, index), current.copy())
        engine = self.engine(source)
        new = engine.apply(click, current, self.threshold_for(engine))
        apply_undoable(labels, new.astype(labels.data.dtype), tuple(region))
        self.clicks.append(click)
        self.owner._update_readout()

    def clear(self) -> None:
        """Remove every click and restore the slices as they were before the first click."""
        source = self.owner._source()
        labels = self.owner.lesion_layer(source)
        for (axis, index), before in self._before.items():
            region = [slice(None)] * 3
            region[axis] = index
            apply_undoable(labels, before, tuple(region))
        for engine in self.engines.values():
            for axis, index in self._before:
                engine.clear(axis, index)
        self._before.clear()
        self.clicks.clear()
        if self.layer is not None:
            self.layer.selected_data = set()
            with self.layer.events.data.blocker():
                self.layer.data = np.empty((0, 3))

    def provenance(self) -> dict[int, list]:
        """Clicks per slice index, recorded with queued items."""
        out: dict[int, list] = {}
        for click in self.clicks:
            out.setdefault(click.index, []).append(click.to_dict())
        return out
