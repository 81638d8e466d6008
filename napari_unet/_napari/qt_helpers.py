"""Small Qt/napari helpers shared by the dock widget's parts."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container


def add_sections(container: Container, panels: dict) -> dict:
    """Collapsible sections under the main controls, so the dock stays short."""
    from superqt import QCollapsible

    sections = {}
    for title, panel in panels.items():
        # a button reads "&" as a mnemonic marker; "&&" shows it as written
        section = QCollapsible(title.replace("&", "&&"))
        section.addWidget(panel.native)
        container.native.layout().addWidget(section)
        sections[title] = section
    return sections


class PendingLabels:
    """The lesion layer of ``source``, created only when an autosave is really restored."""

    def __init__(self, widget, source) -> None:
        self._widget, self._source = widget, source

    @property
    def data(self):
        return np.zeros(self._source.data.shape, dtype=np.uint8)

    def data_setitem(self, indices, value) -> None:
        self._widget.lesion_layer(self._source).data_setitem(indices, value)


def qt_alive(widget) -> bool:
    """False once the C++ side of a Qt object is deleted (its dock was closed)."""
    from qtpy import API_NAME

    if API_NAME.startswith("PySide"):
        from qtpy import shiboken

        return bool(shiboken.isValid(widget))
    from qtpy import sip

    return not sip.isdeleted(widget)


def while_open(widget, callback):
    """``callback``, run only while ``widget`` still exists on the Qt side.

    A worker can deliver its result after the dock that started it was closed (or the
    viewer quit); that result then has nowhere to go and is dropped, instead of raising
    from a deleted label. Worker errors are not routed through here: they still notify.
    """

    def guarded(*args):
        if qt_alive(widget):
            return callback(*args)
        return None

    return guarded


def single_shot_timer(milliseconds: int, callback, parent):
    """A restartable one-shot timer owned by ``parent`` (it dies with the widget)."""
    from qtpy.QtCore import QTimer

    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(milliseconds)
    timer.timeout.connect(callback)
    return timer


def count_slices(generator):
    """Re-yield a core progress generator once per finished slice (napari counts yields)."""
    done = 0
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            return stop.value
        for _ in range(event.done - done):
            yield
        done = event.done


def grow(box: slice, margin: int, length: int) -> slice:
    start = 0 if box.start is None else max(0, box.start - margin)
    stop = length if box.stop is None else min(length, box.stop + margin)
    return slice(start, stop)


def relative(inner: slice, outer: slice, length: int) -> slice:
    start = (inner.start or 0) - (outer.start or 0)
    stop = (length if inner.stop is None else inner.stop) - (outer.start or 0)
    return slice(start, stop)
