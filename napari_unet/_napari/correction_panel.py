"""Correction helpers on the lesion layer; every change goes through napari's undo history."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from magicgui.widgets import ComboBox, Container, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info

from ..core import editing
from .view import current_slice

SLICE, VOLUME = "current slice", "whole volume"


def apply_undoable(layer, new: np.ndarray, region: tuple | None = None) -> int:
    """Write ``new`` into ``layer.data[region]`` via ``data_setitem`` (one undo step).

    ``region`` may mix slices and integer indices (a single slice along an axis).
    """
    region = region or (slice(None),) * layer.data.ndim
    full_region = tuple(slice(r, r + 1) if isinstance(r, int) else r for r in region)
    for axis, item in enumerate(region):
        if isinstance(item, int):
            new = np.expand_dims(new, axis)
    old = layer.data[full_region]
    changed = np.nonzero(old != new)
    if not changed[0].size:
        return 0
    offsets = [r.start or 0 for r in full_region]
    indices = tuple(c + o for c, o in zip(changed, offsets, strict=True))
    layer.data_setitem(indices, new[changed])
    return int(changed[0].size)


class CorrectionPanel(Container):
    """Remove small lesions, fill holes, grow/shrink, copy a neighbour, fill between slices."""

    def __init__(self, viewer, lesion_layer: Callable) -> None:
        super().__init__(labels=True, label="correct")
        self.viewer = viewer
        self._lesion_layer = lesion_layer  # returns the active lesion Labels layer (or raises)
        self.scope = ComboBox(label="apply to", choices=[SLICE, VOLUME], value=SLICE)
        self.min_size = SpinBox(label="min lesion size", min=1, max=1_000_000, value=10)
        self.min_unit = ComboBox(label="unit", choices=["voxels", "mL ×0.001"], value="voxels")
        buttons = {
            "Remove small lesions": self.remove_small,
            "Fill holes": self.fill_holes,
            "Grow 1 voxel": self.grow,
            "Shrink 1 voxel": self.shrink,
            "Copy from previous slice": lambda: self.copy_neighbour(-1),
            "Copy from next slice": lambda: self.copy_neighbour(+1),
            "Fill between annotated slices": self.fill_between,
        }
        self.buttons = {}
        for text, action in buttons.items():
            button = PushButton(text=text)
            button.changed.connect(lambda _v=None, action=action: self._run(action))
            self.buttons[text] = button
        self.extend([self.scope, self.min_size, self.min_unit, *self.buttons.values()])

    def _run(self, action) -> None:
        try:
            changed = action()
            show_info(f"napari-unet: {changed} voxel(s) changed (Ctrl+Z undoes)")
        except Exception as exc:  # noqa: BLE001 - report every failure to the user
            show_error(f"napari-unet: {exc}")

    def _region(self, layer) -> tuple:
        if self.scope.value == VOLUME:
            return (slice(None),) * 3
        axis, index = current_slice(self.viewer, layer)
        region = [slice(None)] * 3
        region[axis] = index
        return tuple(region)

    def _apply(self, function) -> int:
        layer = self._lesion_layer()
        region = self._region(layer)
        current = np.asarray(layer.data[region])
        return apply_undoable(layer, function(current).astype(layer.data.dtype), region)

    def remove_small(self) -> int:
        layer = self._lesion_layer()
        if self.min_unit.value == "voxels":
            minimum = int(self.min_size.value)
        else:
            minimum = editing.min_voxels_for_ml(self.min_size.value / 1000.0, layer.scale[-3:])
        return self._apply(lambda m: editing.remove_small_components(m, minimum))

    def fill_holes(self) -> int:
        return self._apply(lambda m: editing.fill_holes(m, _main_label(m)))

    def grow(self) -> int:
        return self._apply(lambda m: editing.grow(m, _main_label(m)))

    def shrink(self) -> int:
        return self._apply(editing.shrink)

    def copy_neighbour(self, offset: int) -> int:
        layer = self._lesion_layer()
        axis, index = current_slice(self.viewer, layer)
        pasted = editing.copy_neighbour_slice(np.asarray(layer.data), axis, index, offset)
        region = [slice(None)] * 3
        region[axis] = index
        return apply_undoable(layer, pasted, tuple(region))

    def fill_between(self) -> int:
        """Fill between the nearest annotated slices below and above the current one."""
        layer = self._lesion_layer()
        axis, index = current_slice(self.viewer, layer)
        annotated = editing.annotated_slices(np.asarray(layer.data), axis)
        below = [i for i in annotated if i <= index]
        above = [i for i in annotated if i > index]
        if not below or not above:
            raise ValueError(
                "Annotate a slice on each side of the current one, then fill between them"
            )
        first, last = below[-1], above[0]
        if first == index:  # standing on an annotated slice: fill towards the next one up
            first = index
        volume = editing.interpolate_slices(np.asarray(layer.data), axis, first, last)
        region = [slice(None)] * 3
        region[axis] = slice(first, last + 1)
        return apply_undoable(layer, volume[tuple(region)], tuple(region))


def _main_label(mask: np.ndarray) -> int:
    values = mask[mask > 0]
    return int(np.bincount(values).argmax()) if values.size else 1
