"""The click model's network time per click: the patch alone, with its mirror, and the zoom-in.

On the bundled sample brain, the simulated user clicks each lesion slice of
``napari-unet evaluate-clicks`` once at the lesion's centre, then once at the largest
error; at that second click the guided engine's patch forward pass is timed with and
without mirror averaging (round-robin, so a drift of the machine's speed favours neither),
and its magnified look where the object is small enough to get one::

    python benchmarks/click_patch.py --threads 2 --json docs/click_patch.json

The network time is a part of a GUI click; ``benchmarks/gui_responsiveness.py`` measures
the whole click, from the point added to the lesion layer refreshed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lesion-t1-clicks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timings per slice and path")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import numpy as np
    import torch

    from napari_unet.core.click_eval import lesion_slices
    from napari_unet.core.click_maps import first_click, next_click
    from napari_unet.core.clicks import Click
    from napari_unet.core.guided import GuidedClickEngine
    from napari_unet.core.inference import Predictor
    from napari_unet.core.io import read_image
    from napari_unet.core.models import get_model
    from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    predictor = Predictor(bundle, batch_size=1)
    image = read_image(SAMPLE_T1).data.astype(np.float32)
    truth = read_image(SAMPLE_LESION).data > 0
    samples: dict[str, list[float]] = {"patch": [], "patch + mirror": [], "zoomed look": []}
    engines = {flip: GuidedClickEngine(predictor, image, flip_average=flip) for flip in (0, 1)}
    for task in lesion_slices(truth):
        target = truth[task.index]
        first = first_click(target)
        if first is None:
            continue
        engine = engines[0]
        engine.clear(0, task.index)
        drawn = engine.apply(Click(0, task.index, *first), np.zeros_like(target), bundle.threshold)
        second = next_click(drawn.astype(bool), target)
        if second is None:
            continue
        click = Click(0, task.index, *second)
        engine.clicks[(0, task.index)].append(click)
        engines[1].clicks[(0, task.index)] = list(engine.clicks[(0, task.index)])
        engines[1].added[(0, task.index)] = engine.added[(0, task.index)]
        engines[0].object_probability(click)  # warm-up for this patch size
        for _ in range(args.repeats):
            for flip, name in ((0, "patch"), (1, "patch + mirror")):
                start = time.perf_counter()
                prob, box = engines[flip].object_probability(click)
                samples[name].append((time.perf_counter() - start) * 1e3)
        crop = engine.zoom_box(click, prob, box, bundle.threshold)
        if crop is not None:
            for _ in range(args.repeats):
                start = time.perf_counter()
                engine.zoomed_look(click, box, crop)
                samples["zoomed look"].append((time.perf_counter() - start) * 1e3)
    result = {
        "model": bundle.version_id,
        "click_flip_average_declared": bundle.click_flip_average,
        "threads": args.threads,
        "rows": {
            name: {
                "samples": len(values),
                "median_ms": statistics.median(values) if values else None,
            }
            for name, values in samples.items()
        },
    }
    sys.stdout.write(f"{'network pass at the 2nd click':32s} {'samples':>8s} {'median':>10s}\n")
    for name, row in result["rows"].items():
        median = "n/a" if row["median_ms"] is None else f"{row['median_ms']:.1f} ms"
        sys.stdout.write(f"{name:32s} {row['samples']:8d} {median:>10s}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        sys.stdout.write(f"wrote {args.json}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
