"""GUI responsiveness: click-to-overlay latency and the longest event-loop stall.

Run under a display (Xvfb is fine)::

    xvfb-run -a python benchmarks/gui_responsiveness.py --json docs/gui_responsiveness.json

1. *Segment current slice* is clicked N times on the sample brain; each sample is the
   time from the click to the lesion layer having been refreshed with the new slice.
2. A positive click is added to the click points layer N times per click engine (on
   lesion slices; the clicks are cleared in between); each sample is the time from the
   point being added to the lesion layer having been refreshed.
3. While *Segment volume* runs, a 5 ms QTimer records the gaps between its ticks; the
   longest gap is how long napari's event loop was blocked.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np


class StallProbe:
    """A watchdog thread: when the event loop's heartbeat is over 60 ms old, it records the
    GUI thread's stack, so a stall can be traced to the code that caused it."""

    def __init__(self, heartbeat: list[float]) -> None:
        import collections
        import threading

        self.heartbeat = heartbeat
        self.samples: collections.Counter = collections.Counter()
        self.main = threading.main_thread().ident
        self.running = True
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        import sys
        import traceback

        while self.running:
            time.sleep(0.01)
            if time.perf_counter() - self.heartbeat[0] > 0.06:
                frame = sys._current_frames().get(self.main)
                if frame is not None:
                    self.samples["".join(traceback.format_stack(frame)[-6:])] += 1

    def report(self) -> None:
        self.running = False
        sys.stdout.write(f"stall samples (10 ms each): {sum(self.samples.values())}\n")
        for stack, count in self.samples.most_common(5):
            sys.stdout.write(f"--- {count} samples\n{stack}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="gui_responsiveness.json")
    parser.add_argument(
        "--diagnose-stalls",
        action="store_true",
        help="print where the GUI thread was whenever the event loop stalled over 60 ms",
    )
    parser.add_argument("--only-finetune", action="store_true", help="skip slice/click/volume")
    args = parser.parse_args()

    # a scratch user-data folder: never read or write the user's workspace and autosaves
    scratch = tempfile.mkdtemp(prefix="napari-unet-scratch-")
    atexit.register(shutil.rmtree, scratch, True)
    os.environ["XDG_DATA_HOME"] = os.environ["XDG_CONFIG_HOME"] = scratch

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
    for repeat in range(0 if args.only_finetune else args.repeats):
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

    def click_latencies(engine: str, second: bool = False) -> list[float]:
        """Point-and-click: a positive click on a lesion slice -> lesion layer refreshed.

        With ``second``, on slices whose lesion fits in 20 pixels (where the guided model
        may zoom in), the simulated user's second click is timed instead of the first.
        """
        from scipy import ndimage

        from napari_unet.core.click_maps import first_click, next_click

        truth = np.asarray(viewer.layers["true lesion (synthetic)"].data) > 0
        lesion_slices = [z for z in range(truth.shape[0]) if truth[z].sum() > 30]
        if second:
            lesion_slices = [
                z
                for z in range(truth.shape[0])
                if truth[z].sum() >= 10
                and max(s.stop - s.start for s in ndimage.find_objects(truth[z].astype(int))[0])
                <= 20
            ]
        panel = widget.click_panel
        panel.engine_choice.value = engine
        points = panel.start()
        samples = []
        for repeat in range(args.repeats + 1):  # the first loads the model: not counted
            z = lesion_slices[(repeat * 5) % len(lesion_slices)]
            viewer.dims.set_current_step(0, z)
            app.processEvents()
            row, col, _ = first_click(truth[z])
            if second:
                points.add([z, row, col])
                app.processEvents()
                drawn = np.asarray(labels.data[z]) > 0
                nearby = np.zeros_like(drawn)
                nearby[max(0, row - 30) : row + 30, max(0, col - 30) : col + 30] = True
                found = next_click(drawn, truth[z], nearby)
                if found is None:  # nothing to fix: a negative click just outside
                    found = (row, col + int(np.argmin(drawn[row, col:])), False)
                row, col, positive = found
                panel.polarity.value = panel.polarity.choices[0 if positive else 1]
            refreshed = []
            callback = labels.events.set_data.connect(
                lambda _e, refreshed=refreshed: refreshed.append(time.perf_counter())
            )
            start = time.perf_counter()
            points.add([z, row, col])
            app.processEvents()
            labels.events.set_data.disconnect(callback)
            if repeat:
                samples.append((refreshed[-1] if refreshed else time.perf_counter()) - start)
            panel.polarity.value = panel.polarity.choices[0]
            panel.clear()
        return samples

    click_results = {
        name: [float("nan")] if args.only_finetune else click_latencies(engine)
        for name, engine in (
            ("guided", "click-guided U-Net"),
            ("baseline", "baseline: automatic model"),
        )
    }
    click_results["guided_second_small"] = (
        [float("nan")] if args.only_finetune else click_latencies("click-guided U-Net", True)
    )

    def longest_gap(action) -> tuple[float, float]:
        """Run ``action`` and wait for the worker; (longest event-loop gap ms, seconds)."""
        gaps = []
        clock = QElapsedTimer()
        clock.start()
        last = [clock.elapsed()]
        heartbeat = [time.perf_counter()]
        probe = StallProbe(heartbeat) if args.diagnose_stalls else None

        def tick():
            now = clock.elapsed()
            gaps.append(now - last[0])
            last[0] = now
            heartbeat[0] = time.perf_counter()

        timer = QTimer()
        timer.setInterval(5)
        timer.timeout.connect(tick)
        timer.start()
        started = time.perf_counter()
        action()
        wait_idle()
        timer.stop()
        if probe is not None:
            probe.report()
        return float(max(gaps)) if gaps else float("nan"), time.perf_counter() - started

    volume_gap, volume_seconds = float("nan"), float("nan")
    if not args.only_finetune:
        volume_gap, volume_seconds = longest_gap(widget.volume_button.clicked.emit)

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

    if args.only_finetune:
        sys.stdout.write(f"fine-tune {finetune_seconds:.1f} s, longest gap {finetune_gap:.0f} ms\n")
        viewer.close()
        return
    result = {
        "slice_click_to_overlay_ms_median": statistics.median(latencies) * 1e3,
        "slice_click_to_overlay_ms_p95": float(np.percentile(latencies, 95)) * 1e3,
        "volume_seconds_in_gui": volume_seconds,
        "event_loop_longest_gap_ms": volume_gap,
        "finetune_seconds_in_gui": finetune_seconds,
        "event_loop_longest_gap_during_finetune_ms": finetune_gap,
        **{
            f"click_{name}_to_overlay_ms_median": statistics.median(values) * 1e3
            for name, values in click_results.items()
        },
        **{
            f"click_{name}_to_overlay_ms_p95": float(np.percentile(values, 95)) * 1e3
            for name, values in click_results.items()
        },
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
        (
            "click (guided U-Net) -> overlay, median",
            result["click_guided_to_overlay_ms_median"],
            "ms",
            "<= 100",
        ),
        (
            "click (guided U-Net) -> overlay, p95",
            result["click_guided_to_overlay_ms_p95"],
            "ms",
            "",
        ),
        (
            "2nd click, lesion <= 20 px (zoom-in), median",
            result["click_guided_second_small_to_overlay_ms_median"],
            "ms",
            "<= 100",
        ),
        (
            "click (baseline) -> overlay, median",
            result["click_baseline_to_overlay_ms_median"],
            "ms",
            "<= 100",
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
