"""GUI responsiveness: click-to-overlay latency and the longest event-loop stall.

Run under a display (Xvfb is fine)::

    xvfb-run -a python benchmarks/gui_responsiveness.py --json docs/gui_responsiveness.json

1. *Segment current slice* is clicked N times on the sample brain; each sample is the
   time from the click to the lesion layer having been refreshed with the new slice.
2. While *Segment volume* runs, a 5 ms QTimer records the gaps between its ticks; the
   longest gap is how long napari's event loop was blocked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="gui_responsiveness.json")
    args = parser.parse_args()

    import napari
    import torch
    from qtpy.QtCore import QElapsedTimer, QTimer
    from qtpy.QtWidgets import QApplication

    torch.set_num_threads(args.threads)
    viewer = napari.Viewer(title="napari-unet benchmark")
    viewer.open_sample("napari-unet", "stroke_t1")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Lesion segmentation")
    app = QApplication.instance()

    def wait_idle():
        while widget.worker is not None:
            app.processEvents()
            time.sleep(0.0005)

    # warm-up: loads the model, fits the volume statistics once
    widget.slice_button.clicked.emit()
    wait_idle()

    depth = viewer.layers["T1 sample brain"].data.shape[0]
    latencies = []
    labels = viewer.layers["T1 sample brain lesion"]
    for repeat in range(args.repeats):
        index = 40 + (repeat * 7) % (depth - 80)
        viewer.dims.set_current_step(0, index)
        app.processEvents()
        refreshed = []
        callback = labels.events.set_data.connect(
            lambda _e, refreshed=refreshed: refreshed.append(time.perf_counter())
        )
        start = time.perf_counter()
        widget.slice_button.clicked.emit()
        wait_idle()
        app.processEvents()
        labels.events.set_data.disconnect(callback)
        end = refreshed[-1] if refreshed else time.perf_counter()
        latencies.append(end - start)

    def longest_gap(action) -> tuple[float, float]:
        """Run ``action`` and wait for the worker; (longest event-loop gap ms, seconds)."""
        gaps = []
        clock = QElapsedTimer()
        clock.start()
        last = [clock.elapsed()]

        def tick():
            now = clock.elapsed()
            gaps.append(now - last[0])
            last[0] = now

        timer = QTimer()
        timer.setInterval(5)
        timer.timeout.connect(tick)
        timer.start()
        started = time.perf_counter()
        action()
        wait_idle()
        timer.stop()
        return float(max(gaps)) if gaps else float("nan"), time.perf_counter() - started

    volume_gap, volume_seconds = longest_gap(widget.volume_button.clicked.emit)

    import tempfile

    with tempfile.TemporaryDirectory() as workspace:
        widget.queue_panel.workspace.value = workspace
        widget.queue_panel.span.value = 2
        truth = np.asarray(viewer.layers["true lesion (synthetic)"].data)
        viewer.dims.set_current_step(0, int(np.argmax(truth.sum(axis=(1, 2)))))
        widget.queue_panel.queue_current()
        widget.models_panel.steps.value = 40
        finetune_gap, finetune_seconds = longest_gap(
            widget.models_panel.finetune_button.clicked.emit
        )

    result = {
        "slice_click_to_overlay_ms_median": statistics.median(latencies) * 1e3,
        "slice_click_to_overlay_ms_p95": float(np.percentile(latencies, 95)) * 1e3,
        "volume_seconds_in_gui": volume_seconds,
        "event_loop_longest_gap_ms": volume_gap,
        "finetune_seconds_in_gui": finetune_seconds,
        "event_loop_longest_gap_during_finetune_ms": finetune_gap,
        "threads": args.threads,
        "repeats": args.repeats,
    }
    rows = [
        (
            "slice: click -> overlay refreshed, median",
            result["slice_click_to_overlay_ms_median"],
            "ms",
            "<= 100",
        ),
        (
            "slice: click -> overlay refreshed, p95",
            result["slice_click_to_overlay_ms_p95"],
            "ms",
            "",
        ),
        ("volume segmentation in the GUI", volume_seconds, "s", ""),
        ("longest event-loop gap during it", volume_gap, "ms", "<= 100"),
        ("fine-tune (40 steps, 5 slices) in the GUI", finetune_seconds, "s", ""),
        ("longest event-loop gap during the fine-tune", finetune_gap, "ms", "<= 100"),
    ]
    print(f"{'measure':44s} {'value':>10s} {'unit':5s} {'target':>8s}")
    for name, value, unit, target in rows:
        print(f"{name:44s} {value:10.1f} {unit:5s} {target:>8s}")
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=2)
    viewer.close()


if __name__ == "__main__":
    main()
