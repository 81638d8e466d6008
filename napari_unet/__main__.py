"""``python -m napari_unet``: open napari with the sample brain and the widget (or run headless)."""

from __future__ import annotations

import argparse
import os
import sys


def display_available() -> bool:
    """True when a Qt window can be shown (an X or Wayland display, or macOS/Windows)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def launch_viewer(sample: bool = True):
    import napari

    viewer = napari.Viewer(title="napari-unet")
    if sample:
        viewer.open_sample("napari-unet", "stroke_t1")
    viewer.window.add_plugin_dock_widget("napari-unet", "Lesion segmentation")
    return viewer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_unet", description=__doc__)
    parser.add_argument("--headless", action="store_true", help="never open a window")
    parser.add_argument("--output", default="out/demo", help="where headless results go")
    args = parser.parse_args(argv)
    if args.headless or not display_available():
        from .core.demo import run_demo

        sys.stdout.write("No display: running the segmentation pipeline headless.\n")
        sys.stdout.flush()
        return run_demo(args.output)
    import napari

    launch_viewer()
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
