"""Proof that the correction loop helps, and how long it takes on this machine.

1. A real brain (MNI152 2009c head) with *hyperintense* lesions, a kind the bundled T1
   model was never trained on: the base model misses them.
2. Queue corrected masks on 5 slices (train) and 4 other slices (val).
3. Fine-tune with the default settings (``--promote auto``).
4. Report Dice on *held-out* slices of the same lesions (neither train nor val) before and
   after, the gate's decision, and the wall time. Then a run on 10 queued slices for the
   60-second target.

Usage: ``python benchmarks/finetune_loop.py [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_unet.core import queue_io
from napari_unet.core.edit_queue import EditQueue
from napari_unet.core.finetune import FinetuneConfig, finetune
from napari_unet.core.inference import Predictor
from napari_unet.core.io import LoadedImage
from napari_unet.core.io.geometry import ImageGeometry
from napari_unet.core.metrics import dice
from napari_unet.core.progress import drain
from napari_unet.core.registry import ModelRegistry
from napari_unet.core.synth.generator import make_case


def held_out_dice(bundle, image, mask, slices) -> float:
    predictor = Predictor(bundle, device="cpu")
    stats = predictor.fit_stats(image, 3)
    prob = predictor.predict_volume(image, axis=0, stats=stats)
    pred = prob[slices] >= bundle.threshold
    return dice(pred, mask[slices] > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", default="finetune_loop.json")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    case = make_case(424242, template_name="mni2009c_head", mode="hyper")
    geometry = ImageGeometry.from_affine(case.affine, case.image.shape)
    image, mask = geometry.to_display(case.image), geometry.to_display(case.label)
    lesion_slices = [int(s) for s in np.flatnonzero(mask.sum(axis=(1, 2)) > 60)]
    train, val = lesion_slices[0::3][:5], lesion_slices[1::3][:4]
    held_out = [s for s in lesion_slices if s not in train and s not in val]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "hyper_case.nii.gz"
        source.write_bytes(b"benchmark source")
        loaded = LoadedImage(image, geometry, source)
        workspace = Path(tmp) / "ws"
        queue = EditQueue(workspace)
        queue_io.queue_slices(queue, loaded, mask, slices=train, split="train")
        queue_io.queue_slices(queue, loaded, mask, slices=val, split="val")
        registry = ModelRegistry(workspace)
        base = registry.load()
        rows["held-out Dice, base model"] = held_out_dice(base, image, mask, held_out)
        start = time.perf_counter()
        result = drain(finetune(workspace, FinetuneConfig(device="cpu")))
        rows["fine-tune wall time, 5 train slices (s)"] = time.perf_counter() - start
        rows["gate: val Dice base"] = result.base_metrics["dice"]
        rows["gate: val Dice candidate"] = result.candidate_metrics["dice"]
        rows["gate: promoted (1 = yes)"] = float(result.promoted)
        candidate = registry.load(result.candidate)
        rows["held-out Dice, fine-tuned model"] = held_out_dice(candidate, image, mask, held_out)

        workspace10 = Path(tmp) / "ws10"
        queue10 = EditQueue(workspace10)
        queue_io.queue_slices(queue10, loaded, mask, slices=lesion_slices[::2][:10])
        ModelRegistry(workspace10).close()
        start = time.perf_counter()
        drain(finetune(workspace10, FinetuneConfig(device="cpu")))
        rows["fine-tune wall time, 10 queued slices (s)"] = time.perf_counter() - start
    rows["held-out slices"] = float(len(held_out))
    print(f"{'measure':44s} {'value':>10s}")
    for name, value in rows.items():
        print(f"{name:44s} {value:10.3f}")
    Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
