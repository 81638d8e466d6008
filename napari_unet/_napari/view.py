"""What the user is looking at: the displayed slice and the visible region, in data indices."""

from __future__ import annotations

import warnings

import numpy as np


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def skip_dims_update_on_data(viewer, layer) -> None:
    """Stop napari recomputing the viewer's dims each time ``layer``'s data changes.

    napari recomputes every layer's range on any layer's data change: 10-20 ms a click on
    the click layer (``benchmarks/gui_responsiveness.py``). A click is used only on the
    image's displayed slice, inside its extent (one outside is refused), so clicks need not
    change the ranges. Adding, removing or moving layers still updates the dims. Does
    nothing where napari has no such callback (it is private: if a later napari hides it,
    clicks are as slow as before, never wrong).
    """
    with warnings.catch_warnings():  # napari warns plugins off private names; see above
        warnings.simplefilter("ignore", FutureWarning)
        update = getattr(viewer, "_on_layers_change", None)
    if update is not None:
        layer.events.data.disconnect(update)


def voxel_spacing(layer) -> tuple[float, float, float]:
    """The layer's (Z, Y, X) voxel spacing in mm: its scale, set from the file's header."""
    z, y, x = (float(s) for s in layer.scale[-3:])
    return z, y, x


def current_slice(viewer, layer) -> tuple[int, int]:
    """(axis, index) of the 2D slice napari shows for a 3D ``layer``."""
    if viewer.dims.ndisplay != 2:
        raise ValueError("Switch napari to 2D view to segment the current slice")
    not_displayed = [a for a in viewer.dims.not_displayed if a >= viewer.dims.ndim - layer.ndim]
    if len(not_displayed) != 1:
        raise ValueError("Only 3D images are supported for slice segmentation")
    axis = not_displayed[0] - (viewer.dims.ndim - layer.ndim)
    data_point = layer.world_to_data(viewer.dims.point)
    index = int(np.clip(np.round(data_point[axis]), 0, layer.data.shape[axis] - 1))
    return axis, index


def visible_box(viewer, layer, axis: int) -> tuple[slice, slice]:
    """Row/column slices (in the 2D slice's own axes) of the part on screen after zooming."""
    other = [a for a in range(3) if a != axis]
    height_px, width_px = viewer.window._qt_viewer.canvas.size  # (height, width) in pixels
    zoom = camera(viewer).zoom
    center = np.asarray(camera(viewer).center)[-2:]
    half = np.array([height_px, width_px]) / (2 * zoom)
    world_lo = np.asarray(viewer.dims.point, dtype=float).copy()
    world_hi = world_lo.copy()
    displayed = list(viewer.dims.displayed)
    world_lo[displayed] = center - half
    world_hi[displayed] = center + half
    lo = np.asarray(layer.world_to_data(world_lo))
    hi = np.asarray(layer.world_to_data(world_hi))
    box = []
    for data_axis in other:
        a, b = sorted((lo[data_axis], hi[data_axis]))
        start = int(np.clip(np.floor(a), 0, layer.data.shape[data_axis]))
        stop = int(np.clip(np.ceil(b) + 1, 0, layer.data.shape[data_axis]))
        if stop <= start:
            raise ValueError("The image is not visible on screen; reset the view (Ctrl+R)")
        box.append(slice(start, stop))
    return box[0], box[1]
