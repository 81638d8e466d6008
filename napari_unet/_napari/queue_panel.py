"""Queue panel: queue corrections, browse items with thumbnails, remove/restore, change split.

Also autosaves the lesion layer every few seconds while it has unqueued edits,
and restores that autosave when the same image is opened again.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from ..core import queue_io
from ..core.autosave import Autosaver
from ..core.edit_queue import EditQueue, QueueItem, file_sha256
from ..core.io import LoadedImage
from ..core.workspace import default_workspace
from .layers import META_KEY, ROLE_KEY, geometry_from_metadata
from .view import current_slice

AUTOSAVE_MS = 5000
THUMB = 48


def thumbnail(image: np.ndarray, mask: np.ndarray, size: int = THUMB) -> np.ndarray:
    """An RGB thumbnail: the slice in grey with the mask in red."""
    grey = image[0].astype(np.float32)
    low, high = np.percentile(grey, [1, 99])
    grey = np.clip((grey - low) / max(high - low, 1e-6), 0, 1)
    rgb = np.stack([grey] * 3, axis=-1)
    rgb[mask > 0] = rgb[mask > 0] * 0.4 + np.array([0.6, 0.0, 0.0])
    step = max(1, int(np.ceil(max(rgb.shape[:2]) / size)))
    return (rgb[::step, ::step] * 255).astype(np.uint8)


class QueuePanel(Container):
    def __init__(self, owner) -> None:
        super().__init__(labels=True, label="queue")
        self.owner = owner  # the SegmentationWidget
        self.viewer = owner.viewer
        self.workspace = FileEdit(label="workspace", mode="d", value=default_workspace())
        self.split = ComboBox(label="split", choices=["train", "val"], value="train")
        self.note = LineEdit(label="note")
        self.span = SpinBox(
            label="± slices",
            min=0,
            max=200,
            value=0,
            tooltip="also queue this many slices on each side",
        )
        self.queue_button = PushButton(text="Queue correction [Alt+Q]")
        self.counts = Label(label="queued", value="")
        self.list = Select(label="items", choices=[])
        self.open_button = PushButton(text="Open item's slice")
        self.remove_button = PushButton(text="Remove")
        self.restore_button = PushButton(text="Undo remove")
        self.move_button = PushButton(text="Move to other split")
        self.extend(
            [
                self.workspace,
                self.split,
                self.note,
                self.span,
                self.queue_button,
                self.counts,
                self.list,
                self.open_button,
                self.remove_button,
                self.restore_button,
                self.move_button,
            ]
        )
        self._queue: EditQueue | None = None
        self._items: list[QueueItem] = []
        self._removed: list[int] = []
        self._source_hashes: dict[str, str] = {}
        self._saved_checksums: dict[int, int] = {}
        self.queue_button.changed.connect(lambda _v=None: self.owner._guarded(self.queue_current))
        self.open_button.changed.connect(lambda _v=None: self.owner._guarded(self.open_selected))
        self.remove_button.changed.connect(lambda _v=None: self.owner._guarded(self.remove))
        self.restore_button.changed.connect(lambda _v=None: self.owner._guarded(self.restore))
        self.move_button.changed.connect(lambda _v=None: self.owner._guarded(self.move))
        self.workspace.changed.connect(lambda _v=None: self._reopen())
        self._timer = _repeating_timer(AUTOSAVE_MS, self.autosave, owner.native)

    # -- store --------------------------------------------------------------------------
    @property
    def queue(self) -> EditQueue:
        path = Path(self.workspace.value)
        if self._queue is None or self._queue.workspace != path:
            self._queue = EditQueue(path)
        return self._queue

    def _reopen(self) -> None:
        self._queue = None
        self.owner._guarded(self.refresh)

    def refresh(self) -> None:
        queue = self.queue
        self._items = queue.items()
        counts = queue.counts()
        self.counts.value = f"{counts['train']} train, {counts['val']} val"
        labels = [
            f"#{i.id} {i.split} {i.axis_name} {i.slice_index} · {Path(i.source_path).name}"
            f" (rev {i.revision})"
            for i in self._items
        ]
        with self.list.changed.blocked():
            self.list.choices = labels
        self._set_icons()

    def _set_icons(self) -> None:
        from qtpy.QtCore import QSize
        from qtpy.QtGui import QIcon, QImage, QPixmap

        widget = self.list.native
        widget.setIconSize(QSize(THUMB, THUMB))
        for row, item in enumerate(self._items):
            arrays = self.queue.arrays(item, verify=False)
            rgb = np.ascontiguousarray(thumbnail(arrays["image"], arrays["mask"]))
            height, width, _ = rgb.shape
            qimage = QImage(rgb.data, width, height, 3 * width, QImage.Format_RGB888).copy()
            widget.item(row).setIcon(QIcon(QPixmap.fromImage(qimage)))

    def selected(self) -> QueueItem:
        if not self.list.value:
            raise ValueError("Select an item in the queue list first")
        return self._items[self.list.choices.index(self.list.value[0])]

    # -- actions ------------------------------------------------------------------------
    def loaded_image(self, layer) -> LoadedImage:
        geometry = geometry_from_metadata(layer.metadata)
        if geometry is None:
            raise ValueError(
                f"{layer.name!r} was not opened by napari-unet; open the file with "
                "napari-unet's reader so its source can be recorded"
            )
        source = layer.metadata[META_KEY]["source"]
        return LoadedImage(np.asarray(layer.data), geometry, Path(source))

    def source_hash(self, layer) -> str:
        source = layer.metadata[META_KEY]["source"]
        if source not in self._source_hashes:
            self._source_hashes[source] = file_sha256(source)
        return self._source_hashes[source]

    def queue_current(self) -> list[QueueItem]:
        layer = self.owner._source()
        labels = self.owner._active_lesion_layer()
        axis, index = current_slice(self.viewer, layer)
        span = int(self.span.value)
        slices = [
            i for i in range(index - span, index + span + 1) if 0 <= i < layer.data.shape[axis]
        ]
        session = self.owner.sessions.get(id(layer))
        prediction = None
        if session is not None:
            prediction = ((session.probability >= session.threshold) & session.computed).astype(
                np.uint8
            )
        predictor = self.owner.models._predictors
        version = next(iter(predictor.values())).bundle.version_id if predictor else None
        clicks = self.owner.click_provenance()
        items = queue_io.queue_slices(
            self.queue,
            self.loaded_image(layer),
            (np.asarray(labels.data) > 0).astype(np.uint8),
            prediction,
            slices,
            axis,
            self.split.value,
            self.note.value,
            version,
            self.source_hash(layer),
            clicks,
        )
        show_info(f"napari-unet: queued {len(items)} slice(s) into {self.queue.workspace}")
        self.refresh()
        return items

    def open_selected(self) -> None:
        item = self.selected()
        layer = next(
            (
                l
                for l in self.viewer.layers
                if l.metadata.get(META_KEY, {}).get("source") == item.source_path
            ),
            None,
        )
        if layer is None:
            if not Path(item.source_path).exists():
                raise ValueError(f"{item.source_path}: the source file is no longer there")
            layer = self.viewer.open(item.source_path, plugin="napari-unet")[0]
        self.owner.image.value = layer
        self.viewer.dims.set_current_step(item.axis, item.slice_index)

    def remove(self) -> None:
        item = self.selected()
        self.queue.remove(item.id)
        self._removed.append(item.id)
        self.refresh()

    def restore(self) -> None:
        if not self._removed:
            raise ValueError("Nothing to restore in this session")
        self.queue.restore(self._removed.pop())
        self.refresh()

    def move(self) -> None:
        item = self.selected()
        self.queue.set_split(item.id, "val" if item.split == "train" else "train")
        self.refresh()

    # -- autosave -----------------------------------------------------------------------
    def autosave(self) -> None:
        """Save every lesion layer whose contents changed since its last autosave."""
        if self.owner.worker is not None:
            return
        for layer in list(self.viewer.layers):
            if not isinstance(layer, napari.layers.Labels) or (
                layer.metadata.get(ROLE_KEY) != "lesion"  # not e.g. a loaded truth mask
            ):
                continue
            checksum = zlib.crc32(np.ascontiguousarray(layer.data))  # ~3 ms for a brain
            if self._saved_checksums.get(id(layer)) == checksum:
                continue
            if id(layer) not in self._saved_checksums and not np.any(layer.data):
                self._saved_checksums[id(layer)] = checksum
                continue  # a fresh empty layer: nothing worth saving
            self._saved_checksums[id(layer)] = checksum
            sha = self.source_hash(layer)
            mask = np.array(layer.data, dtype=np.uint8, copy=True)
            saver = Autosaver(Path(self.workspace.value))
            worker = create_worker(saver.save, sha, mask, layer.metadata[META_KEY]["source"])
            worker.errored.connect(lambda exc: show_error(f"napari-unet autosave: {exc}"))
            worker.start()

    def restore_autosave(self, source_layer, labels) -> bool:
        """Put an autosaved mask for this image back into ``labels`` (undoable)."""
        from .correction_panel import apply_undoable

        saved = Autosaver(Path(self.workspace.value)).load(self.source_hash(source_layer))
        if saved is None or saved.mask.shape != labels.data.shape or not saved.mask.any():
            return False
        apply_undoable(labels, saved.mask)
        show_info(f"napari-unet: restored unsaved edits autosaved at {saved.saved_at}")
        return True


def _repeating_timer(milliseconds: int, callback, parent):
    from qtpy.QtCore import QTimer

    timer = QTimer(parent)
    timer.setInterval(milliseconds)
    timer.timeout.connect(callback)
    timer.start()
    return timer
