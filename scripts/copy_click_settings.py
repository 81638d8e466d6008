"""Give a newly trained click model the click settings of another, as a new version.

``napari-unet train --clicks`` writes a network with the trainer's default threshold and
no zoom-in. To compare it with the bundled click model under the *same* engine, copy the
bundled model's threshold, ``click_zoom`` and ``click_flip_average`` into a copy of it (the
weights are not touched)::

    python scripts/copy_click_settings.py --model runs/clicks_lw/best.safetensors \\
        --settings-from lesion-t1-clicks --output runs/clicks_lw/engine.safetensors
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the trained click model")
    parser.add_argument("--settings-from", default="lesion-t1-clicks", help="name or path")
    parser.add_argument("--output", required=True, help="new checkpoint (never overwritten)")
    parser.add_argument(
        "--flip-average",
        dest="flip",
        action=argparse.BooleanOptionalAction,
        help="set click_flip_average (default: copy it from --settings-from)",
    )
    args = parser.parse_args()

    from napari_unet.core.checkpoint import load_checkpoint, new_version_id, save_checkpoint
    from napari_unet.core.models import get_model

    bundle = load_checkpoint(args.model)
    source = get_model(args.settings_from)
    if bundle.click_channels != source.click_channels:
        sys.stderr.write(
            f"{args.model}: {bundle.click_channels} click channels, but {args.settings_from} "
            f"has {source.click_channels}; its click settings do not apply\n"
        )
        return 2
    bundle.threshold = source.threshold
    bundle.click_zoom = source.click_zoom
    bundle.click_flip_average = source.click_flip_average if args.flip is None else args.flip
    bundle.provenance = {
        **bundle.provenance,
        "click_settings_from": source.version_id,
        "trained_version": bundle.version_id,
    }
    bundle.version_id = new_version_id()
    save_checkpoint(bundle, args.output)
    sys.stdout.write(
        f"wrote {args.output} ({bundle.version_id}): threshold {bundle.threshold}, "
        f"zoom {None if bundle.click_zoom is None else bundle.click_zoom.to_dict()}, "
        f"flip average {bundle.click_flip_average}\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
