"""Training-step time of the default network in NCHW and channels-last memory.

One training step (forward, Dice + BCE loss, backward, AdamW) on a batch of 160x160
patches, the trainer's default, with the two layouts measured round-robin so a drift of
the machine's speed cannot favour either::

    python benchmarks/train_step.py --threads 2 --json docs/train_step.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch

    from napari_unet.core.training.trainer import DEFAULT_MODEL, dice_ce_loss
    from napari_unet.core.unet import UNet

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, DEFAULT_MODEL.in_channels, args.patch, args.patch)
    y = (torch.rand(args.batch, args.patch, args.patch) > 0.9).float()
    layouts = {"NCHW": torch.contiguous_format, "channels-last": torch.channels_last}
    setups = {}
    for name, fmt in layouts.items():
        model = UNet(DEFAULT_MODEL).train().to(memory_format=fmt)
        setups[name] = (
            model,
            torch.optim.AdamW(model.parameters(), 1e-3),
            x.contiguous(memory_format=fmt),
        )

    def step(name: str) -> float:
        model, optimizer, batch = setups[name]
        start = time.perf_counter()
        loss = dice_ce_loss(model(batch), y, DEFAULT_MODEL.num_classes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    for name in layouts:  # warm-up
        step(name)
        step(name)
    times = {name: [] for name in layouts}
    for _ in range(args.rounds):
        for name in layouts:
            times[name].append(step(name))
    result = {
        "batch": args.batch,
        "patch": args.patch,
        "threads": args.threads,
        "seconds_per_step": {name: statistics.median(t) for name, t in times.items()},
    }
    sys.stdout.write(
        f"training step, batch {args.batch} x {args.patch}^2, {args.threads} threads\n"
    )
    for name, seconds in result["seconds_per_step"].items():
        sys.stdout.write(
            f"  {name:14s} {seconds * 1e3:8.1f} ms  {args.batch / seconds:6.1f} samples/s\n"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
