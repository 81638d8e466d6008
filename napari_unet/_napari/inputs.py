"""Which scan, which channels and which model the dock widget segments with.

``InputSelection`` is mixed into :class:`~.widget.SegmentationWidget`; it reads the
widget's ``image``, ``extra_channels``, ``model``, ``model_file``, ``device`` and
``threshold`` controls, and the queue panel's workspace.
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np

from ..core.inference import Predictor
from ..core.models import get_model
from ..core.registry import active_model_path
from .layers import ROLE_KEY

FILE_CHOICE = "checkpoint file…"
WORKSPACE_CHOICE = "workspace: active version"


class ModelHolder:
    """Keeps one Predictor per (model, device): a model is loaded once, not per click."""

    def __init__(self) -> None:
        self._predictors: dict[tuple[str, str], Predictor] = {}

    def get(self, source: str, device: str) -> Predictor:
        key = (source, device)
        if key not in self._predictors:
            self._predictors[key] = Predictor(get_model(source), device=device)
        return self._predictors[key]


class InputSelection:
    """The scan layers and the loaded model behind a segmentation request."""

    def _init_inputs(self) -> None:
        self.models = ModelHolder()
        self._stats_cache: dict[tuple[tuple[int, ...], str], list] = {}
        self._threshold_from: str | None = None  # model whose threshold the slider took
        self._threshold_moved = False  # has the user moved the slider?

    def _image_layers(self, _widget=None) -> list:
        """Scans to segment or use as channels: image layers, not our probability maps."""
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, napari.layers.Image) and not layer.metadata.get(ROLE_KEY)
        ]

    def _source(self) -> napari.layers.Image:
        layer = self.image.value
        if layer is None:
            raise ValueError("Open a brain scan first (File > Open, or the sample brain)")
        if layer.ndim != 3 or layer.rgb:
            raise ValueError(f"Layer {layer.name!r} is not a 3D grey-scale image")
        return layer

    def _channel_layers(self, source: napari.layers.Image) -> list[napari.layers.Image]:
        """The image layers that form the model input: ``source``, then the extra channels."""
        extras = [layer for layer in self.extra_channels.value if layer is not source]
        for layer in extras:
            if layer.data.shape != source.data.shape or not np.allclose(
                layer.scale[-3:], source.scale[-3:]
            ):
                raise ValueError(
                    f"Channel layer {layer.name!r} {tuple(layer.data.shape)} at spacing "
                    f"{tuple(layer.scale[-3:])} is not on the grid of {source.name!r} "
                    f"{tuple(source.data.shape)} at {tuple(source.scale[-3:])}; resample it "
                    "to the same grid first"
                )
        return [source, *extras]

    def input_data(self, source: napari.layers.Image, predictor: Predictor) -> np.ndarray:
        """The model input for ``source``: (Z, Y, X), or (C, Z, Y, X) with extra channels."""
        layers = self._channel_layers(source)
        expected = predictor.bundle.image_channels
        if len(layers) != expected:
            raise ValueError(
                f"The model {predictor.bundle.version_id} expects {expected} image channel(s) "
                f"but {len(layers)} are selected ({', '.join(l.name for l in layers)}). "
                "Pick the other channels under 'extra channels', in training order."
            )
        if len(layers) == 1:
            return source.data
        return np.stack([np.asarray(layer.data) for layer in layers])

    def _model_source(self) -> str:
        if self.model.value == WORKSPACE_CHOICE:
            return str(active_model_path(Path(self.queue_panel.workspace.value)))
        if self.model.value == FILE_CHOICE:
            path = Path(self.model_file.value)
            if not path.is_file():
                raise ValueError(f"{path}: no such checkpoint file; choose a .safetensors file")
            return str(path)
        return str(self.model.value)

    def _predictor(self) -> Predictor:
        """The chosen model, loaded once; the threshold slider starts at its tuned value."""
        predictor = self.models.get(self._model_source(), self.device.value)
        version = predictor.bundle.version_id
        if version != self._threshold_from:
            self._threshold_from = version
            if not self._threshold_moved:  # the user's own choice always wins
                self.threshold.value = predictor.bundle.threshold
                self._threshold_moved = False
        return predictor

    def _stats(self, source, predictor: Predictor):
        layers = self._channel_layers(source)
        key = (tuple(id(layer) for layer in layers), predictor.bundle.version_id)
        if key not in self._stats_cache:  # volume statistics: one fit per input and model
            data = self.input_data(source, predictor)
            self._stats_cache[key] = predictor.fit_stats(np.asarray(data), 3)
        return self._stats_cache[key]
