"""GPU levers, each measured on and off: CUDA graphs, pinned memory, bf16, batch size.

    python benchmarks/gpu_levers.py --device cuda --json docs/gpu_levers.json

Prints a table and writes JSON. Every time is a median over repetitions after a
warm-up, with the GPU synchronised before the clock stops. It also checks that the
levers keep the answer: graph replay against eager (max |difference|), bf16 against
fp32 and the GPU against the CPU (Dice of the thresholded masks on the sample brain).
Runs on the CPU too (``--device cpu``), without the CUDA-only rows, to test the script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_unet.core.benchmark import machine_info, synchronizer, timed  # noqa: E402
from napari_unet.core.benchmark_volume import MNI_SHAPE  # noqa: E402
from napari_unet.core.inference import Predictor  # noqa: E402
from napari_unet.core.metrics import dice  # noqa: E402
from napari_unet.core.models import get_model  # noqa: E402


def slice_rows(bundle, device: str, repeats: int) -> list[dict]:
    """End-to-end 256x256 slice latency of each combination of levers."""
    image = np.random.default_rng(0).normal(100, 20, (256, 256)).astype(np.float32)
    on_gpu = device.startswith("cuda")
    variants = [("fp32, NCHW", {"precision": "fp32", "channels_last": False})]
    variants.append(("fp32, channels-last", {"precision": "fp32"}))
    variants.append(("bf16, channels-last", {"precision": "bf16"}))
    if on_gpu:
        for name, options in list(variants):
            variants.append((name + ", CUDA graphs", {**options, "cuda_graphs": True}))
    rows = []
    predictors = []
    for name, options in variants:
        if on_gpu:
            options = {"cuda_graphs": False, **options}
        predictor = Predictor(bundle, device=device, batch_size=1, **options)
        stats = predictor.fit_stats(image, 2)
        predictors.append((name, predictor, stats))
    # round-robin, so a drift of the machine's speed favours no variant
    times: dict[str, list[float]] = {name: [] for name, _, _ in predictors}
    for _, predictor, stats in predictors:
        timed(lambda p=predictor, s=stats: p.predict_slice(image, s), 0, warmup=3)
    for _ in range(repeats):
        for name, predictor, stats in predictors:
            times[name] += timed(lambda p=predictor, s=stats: p.predict_slice(image, s), 1, 0)
    reference = predictors[0][1].predict_slice(image, predictors[0][2])
    for name, predictor, stats in predictors:
        answer = predictor.predict_slice(image, stats)
        rows.append(
            {
                "measure": f"slice 256x256 end to end [{name}]",
                "median_ms": statistics.median(times[name]) * 1e3,
                "p95_ms": float(np.percentile(times[name], 95)) * 1e3,
                "max_abs_diff_vs_fp32_nchw": float(np.abs(answer - reference).max()),
            }
        )
    if on_gpu:  # graph replay against eager in the same precision: the same arithmetic
        eager = next(p for n, p, _ in predictors if n == "bf16, channels-last")
        graphed = next(p for n, p, _ in predictors if n == "bf16, channels-last, CUDA graphs")
        stats = eager.fit_stats(image, 2)
        difference = np.abs(eager.predict_slice(image, stats) - graphed.predict_slice(image, stats))
        rows.append(
            {"measure": "graphs vs eager, bf16: max |diff|", "value": float(difference.max())}
        )
    return rows


def volume_rows(bundle, device: str, repeats: int) -> list[dict]:
    """An MNI-sized volume (noise: no tile can be skipped) by batch size, on the host
    path (pinned or not) and on the device-resident path."""
    volume = np.random.default_rng(0).normal(100, 20, MNI_SHAPE).astype(np.float32)
    on_gpu = device.startswith("cuda")
    variants = [("host path", {"device_resident": False})]
    if on_gpu:
        variants.append(("host path, pinned", {"device_resident": False, "pin_memory": True}))
    variants.append(("device-resident", {"device_resident": True}))
    rows = []
    for batch in (4, 16, 32, 64) if on_gpu else (4,):
        for name, options in variants:
            predictor = Predictor(bundle, device=device, batch_size=batch, **options)
            stats = predictor.fit_stats(volume, 3)
            seconds = statistics.median(
                timed(
                    lambda p=predictor, s=stats: p.predict_volume(volume, 0, s),
                    repeats,
                    warmup=2,
                    sync=synchronizer(device),
                )
            )
            rows.append(
                {
                    "measure": f"volume {'x'.join(map(str, MNI_SHAPE[::-1]))}, batch {batch}, "
                    f"{name}",
                    "seconds": seconds,
                    "path": f"{predictor.precision}, graphs={predictor.cuda_graphs}",
                }
            )
    host = Predictor(bundle, device=device, device_resident=False)
    resident = Predictor(bundle, device=device, device_resident=True)
    stats = host.fit_stats(volume, 3)
    difference = np.abs(
        host.predict_volume(volume, 0, stats) - resident.predict_volume(volume, 0, stats)
    )
    rows.append(
        {"measure": "device-resident vs host path: max |diff|", "value": float(difference.max())}
    )
    return rows


def train_rows(bundle, device: str, repeats: int) -> list[dict]:
    """A fine-tuning step by batch size, fp32 against bf16 autocast."""
    from napari_unet.core.precision import autocast
    from napari_unet.core.training.trainer import dice_ce_loss
    from napari_unet.core.unet import UNet

    rows = []
    torch_device = torch.device(device)
    for batch in (8, 32):
        x = torch.randn(batch, bundle.config.in_channels, 160, 160, device=torch_device)
        y = (torch.rand(batch, 160, 160, device=torch_device) > 0.9).float()
        for precision in ("fp32", "bf16"):
            model = UNet(bundle.config).to(torch_device).train()
            model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

            def step(model=model, optimizer=optimizer, precision=precision, x=x, y=y):
                with autocast(precision, torch_device):
                    logits = model(x.contiguous(memory_format=torch.channels_last))
                loss = dice_ce_loss(logits.float(), y, bundle.config.num_classes)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

            seconds = statistics.median(
                timed(step, repeats, warmup=3, sync=synchronizer(torch_device))
            )
            rows.append(
                {
                    "measure": f"fine-tune step, batch {batch} x 160x160, {precision}",
                    "ms": seconds * 1e3,
                    "samples_per_s": batch / seconds,
                }
            )
    return rows


def agreement_rows(bundle, device: str) -> list[dict]:
    """Dice between thresholded masks of the sample brain: bf16 vs fp32 on ``device``,
    and ``device`` vs the CPU (fp32), with the sample's lesion Dice for each path."""
    from napari_unet.core.io import read_image
    from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1

    volume = np.asarray(read_image(SAMPLE_T1).data, dtype=np.float32)
    truth = np.asarray(read_image(SAMPLE_LESION).data) > 0
    paths = {
        "cpu fp32": Predictor(bundle, device="cpu", precision="fp32", channels_last=False),
        f"{device} fp32": Predictor(bundle, device=device, precision="fp32"),
        f"{device} bf16": Predictor(bundle, device=device, precision="bf16"),
    }
    masks = {
        name: p.predict_volume(volume, axis=0) >= bundle.threshold for name, p in paths.items()
    }
    rows = [
        {"measure": f"sample brain lesion Dice [{name}]", "value": dice(mask, truth)}
        for name, mask in masks.items()
    ]
    rows.append(
        {
            "measure": f"mask agreement Dice, {device} bf16 vs {device} fp32",
            "value": dice(masks[f"{device} bf16"], masks[f"{device} fp32"]),
        }
    )
    rows.append(
        {
            "measure": f"mask agreement Dice, {device} fp32 vs cpu fp32",
            "value": dice(masks[f"{device} fp32"], masks["cpu fp32"]),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default=None)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="gpu_levers.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    rows = slice_rows(bundle, args.device, args.repeats)
    rows += volume_rows(bundle, args.device, max(3, args.repeats // 10))
    rows += agreement_rows(bundle, args.device)
    if args.device.startswith("cuda"):
        rows += train_rows(bundle, args.device, args.repeats)
    for row in rows:
        values = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in row.items()
            if k != "measure"
        )
        print(f"{row['measure']:60s} {values}")
    Path(args.json).write_text(json.dumps({"machine": machine_info(), "rows": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
