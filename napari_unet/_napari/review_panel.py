"""Review aids: the lesion list (click to jump) and the per-slice uncertainty strip."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from magicgui.widgets import Container, Image, Label, PushButton, Select

from ..core.editing import Lesion, lesion_table
from ..core.uncertainty import FlipUncertainty
from .view import camera

STRIP_HEIGHT = 24


def uncertainty_strip(per_slice: np.ndarray, current: int | None = None) -> np.ndarray:
    """An RGB strip, one column per slice: brighter red = more disagreement."""
    scores = np.asarray(per_slice, dtype=np.float32)
    scale = scores.max() if scores.max() > 0 else 1.0
    level = (scores / scale * 255).astype(np.uint8)
    strip = np.zeros((STRIP_HEIGHT, len(scores), 3), dtype=np.uint8)
    strip[..., 0] = level
    strip[..., 1] = level // 4
    if current is not None and 0 <= current < len(scores):
        strip[:, current] = (80, 160, 255)
    return np.repeat(strip, max(1, 300 // max(1, len(scores))), axis=1)


class ReviewPanel(Container):
    """Lists lesions largest first; selecting one centres the view on it."""

    def __init__(self, viewer, on_uncertainty: Callable, on_next_uncertain: Callable) -> None:
        super().__init__(labels=False, label="review")
        self.viewer = viewer
        self.lesions: list[Lesion] = []
        self.layer = None
        self.list = Select(choices=[], label="lesions")
        self.list.changed.connect(self._jump)
        self.uncertainty_button = PushButton(text="Estimate uncertainty (flip test)")
        self.next_button = PushButton(text="Next most uncertain slice [Alt+N]", enabled=False)
        self.strip = Image(value=np.zeros((STRIP_HEIGHT, 300, 3), dtype=np.uint8))
        self.strip_label = Label(value="uncertainty per slice: not estimated")
        self.uncertainty_button.changed.connect(lambda _v=None: on_uncertainty())
        self.next_button.changed.connect(lambda _v=None: on_next_uncertain())
        self.result: FlipUncertainty | None = None
        self.visited: set[int] = set()
        self.extend(
            [
                Label(value="lesions (largest first; click to go there)"),
                self.list,
                self.uncertainty_button,
                self.strip_label,
                self.strip,
                self.next_button,
            ]
        )

    def update_lesions(self, layer) -> None:
        self.show_lesions(layer, lesion_table(np.asarray(layer.data), tuple(layer.scale[-3:])))

    def show_lesions(self, layer, lesions: list[Lesion]) -> None:
        self.layer = layer
        self.lesions = lesions
        choices = [
            f"#{i + 1}: {lesion.volume_ml:.2f} mL (slice {round(lesion.centroid[0])})"
            for i, lesion in enumerate(self.lesions)
        ]
        with self.list.changed.blocked():
            self.list.choices = choices

    def _jump(self, selected) -> None:
        if not selected or self.layer is None:
            return
        index = self.list.choices.index(selected[0])
        self.go_to(self.lesions[index].centroid)

    def go_to(self, centroid_data: tuple[float, float, float]) -> None:
        """Show the centroid's slice and centre the camera on it."""
        world = self.layer.data_to_world(centroid_data)
        step = list(self.viewer.dims.point)
        for axis in self.viewer.dims.not_displayed:
            step[axis] = world[axis]
        self.viewer.dims.point = step
        displayed = list(self.viewer.dims.displayed)
        camera(self.viewer).center = tuple(world[a] for a in displayed)

    def show_uncertainty(self, result: FlipUncertainty, axis: int) -> None:
        self.result = result
        self.visited = set()
        total = float(result.per_slice_mm2.sum())
        worst = result.most_uncertain()
        self.strip_label.value = (
            f"uncertainty per slice (axis {axis}): {total:.0f} mm² disagree in all; worst "
            f"slice {worst}"
            if worst is not None
            else "the flip test agrees on every slice"
        )
        self.strip.value = uncertainty_strip(result.per_slice_mm2)
        self.next_button.enabled = worst is not None
