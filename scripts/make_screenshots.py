"""Real screenshots of the plugin on the sample brain, for the README and the user guide.

Run under a display (Xvfb works): ``xvfb-run -a -s "-screen 0 1920x1200x24"
python scripts/make_screenshots.py docs/images``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(out_dir: str) -> None:
    # a scratch user-data folder: never read or write the user's workspace and autosaves
    scratch = tempfile.mkdtemp(prefix="napari-unet-scratch-")
    atexit.register(shutil.rmtree, scratch, True)
    os.environ["XDG_DATA_HOME"] = os.environ["XDG_CONFIG_HOME"] = scratch

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unet._napari.view import camera

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-unet")
    viewer.window._qt_window.resize(1800, 1100)
    viewer.open_sample("napari-unet", "stroke_t1")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Lesion segmentation")
    app = QApplication.instance()

    def settle(seconds: float = 0.5) -> None:
        end = time.time() + seconds
        while time.time() < end or widget.worker is not None:
            app.processEvents()
            time.sleep(0.01)

    def settle_readout(timeout: float = 60.0) -> None:
        """The lesion readout is computed in its own worker after a 250 ms debounce."""
        end = time.time() + timeout
        while "mL" not in str(widget.readout.value):
            if time.time() > end:
                raise SystemExit("the lesion readout did not update within a minute")
            app.processEvents()
            time.sleep(0.01)

    truth = np.asarray(viewer.layers["true lesion (synthetic)"].data)
    z = int(np.argmax(truth.sum(axis=(1, 2))))
    viewer.dims.set_current_step(0, z)
    widget.volume_button.clicked.emit()
    settle(1.0)
    settle_readout()
    viewer.layers["T1 sample brain lesion"].contour = 0
    settle(1.0)
    viewer.screenshot(str(out / "overview.png"), canvas_only=False)

    ys, xs = np.nonzero(truth[z])
    camera(viewer).center = (z, float(ys.mean()), float(xs.mean()))
    camera(viewer).zoom = 3.5
    viewer.layers["true lesion (synthetic)"].visible = True
    viewer.layers["true lesion (synthetic)"].contour = 2
    settle(1.0)
    viewer.screenshot(str(out / "overlay_vs_truth.png"), canvas_only=True)

    viewer.layers["true lesion (synthetic)"].visible = False
    for title in ("Correct", "Review", "Queue"):
        widget.sections[title].expand(animate=False)
    widget.review.uncertainty_button.clicked.emit()
    settle(1.0)
    widget.queue_panel.span.value = 2
    widget.queue_panel.queue_button.clicked.emit()
    settle(1.0)
    viewer.screenshot(str(out / "review_and_queue.png"), canvas_only=False)

    # point-and-click on a slice the automatic model has not touched
    from napari_unet.core.click_maps import first_click

    for title in ("Correct", "Review", "Queue"):
        widget.sections[title].collapse(animate=False)
    widget.sections["Click"].expand(animate=False)
    labels = viewer.layers["T1 sample brain lesion"]
    labels.data[z] = 0
    labels.refresh()
    points = widget.click_panel.start()
    row, col, _ = first_click(truth[z] > 0)
    points.add([z, row, col])
    camera(viewer).zoom = 2.5
    viewer.layers.selection.active = points
    settle(1.0)
    viewer.screenshot(str(out / "clicks.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/images")
