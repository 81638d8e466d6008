"""Would channel widths that fill this CPU's vector lanes lift forward/ceiling, and at what cost?

AVX2 holds 8 floats, AVX-512 16; the previous default's 12-channel full-resolution
layers filled one and a half AVX2 registers (the default since session 8 has 8). This
builds untrained networks of the shipped design (same padding, depth 4, batch norm
folded, the fused graph) with other channel schedules and measures, round-robin against
the ceiling convolution as ``napari-unet benchmark`` does, the forward/ceiling ratio at
batch 1 and 4 and the end-to-end latency of a 256x256 slice. Weights do not change the
speed, so no training is needed to decide whether a schedule is worth training::

    python benchmarks/width_schedules.py --threads 2 --json docs/width_schedules.json

``--isa avx2`` holds oneDNN and ATen to AVX2 in fp32, which estimates an AVX2 host's
figures on a CPU with AVX-512 (the clock and caches stay this CPU's, so it is an estimate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys

SHIPPED = "shipped"  # the bundled default, whatever its widths
SCHEDULES = {
    SHIPPED: None,
    "12-24-48-96-192": (12, 24, 48, 96, 192),
    "16-32-64-128-256": (16, 32, 64, 128, 256),
    "16-24-48-96-192": (16, 24, 48, 96, 192),
    "16-32-48-96-192": (16, 32, 48, 96, 192),
    "8-24-48-96-192": (8, 24, 48, 96, 192),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", help="write the table here")
    parser.add_argument(
        "--schedule",
        action="append",
        metavar="W1,W2,...",
        help="measure these widths (one per level) instead of the built-in list; repeatable",
    )
    parser.add_argument(
        "--batch",
        action="append",
        type=int,
        metavar="N",
        help="forward/ceiling at these batch sizes (default 1 and 4); repeatable",
    )
    parser.add_argument(
        "--isa",
        choices=["native", "avx2"],
        default="native",
        help="avx2: hold oneDNN and ATen to AVX2 and run fp32, to estimate an AVX2 host's "
        "figures on a newer CPU (an estimate: clocks and caches stay this CPU's)",
    )
    args = parser.parse_args()
    precision = "auto"
    if args.isa == "avx2":  # read by oneDNN and ATen when torch loads, so set them first
        if "torch" in sys.modules:
            parser.error("--isa avx2 must be set before torch is imported")
        os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        os.environ["ATEN_CPU_CAPABILITY"] = "avx2"
        precision = "fp32"
    batches = sorted(set(args.batch or [1, 4]))
    if batches[0] < 1:
        parser.error(f"--batch must be at least 1, got {batches[0]}")
    schedules = dict(SCHEDULES)
    if args.schedule:
        schedules = {SHIPPED: None}
        for text in args.schedule:
            widths = tuple(int(w) for w in text.split(","))
            schedules["-".join(map(str, widths))] = widths

    import numpy as np
    import torch

    from napari_unet.core.benchmark import conv_flops, forward_vs_ceiling, timed
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model
    from napari_unet.core.unet import UNet, UNetConfig

    torch.set_num_threads(args.threads)
    shipped = get_model(None)
    shipped_widths = "-".join(map(str, shipped.config.widths()))
    schedules = {
        (f"{shipped_widths} (shipped)" if name == SHIPPED else name): widths
        for name, widths in schedules.items()
        if name == SHIPPED or name != shipped_widths  # the default is measured once
    }
    predictors = {}
    for name, schedule in schedules.items():
        bundle = shipped
        if schedule is not None:
            config = UNetConfig.from_dict(
                {**shipped.config.to_dict(), "base_width": schedule[0], "level_widths": schedule}
            )
            torch.manual_seed(0)
            bundle = dataclasses.replace(shipped, model=UNet(config).eval(), config=config)
        predictors[name] = Predictor(bundle, device="cpu", precision=precision)
    flops = {
        name: conv_flops(p.bundle.model.eval(), (1, p.bundle.config.in_channels, 256, 256))
        for name, p in predictors.items()
    }
    image = np.random.default_rng(0).normal(100, 20, (256, 256)).astype(np.float32)
    stats = {name: p.fit_stats(image, 2) for name, p in predictors.items()}
    latency = {name: [] for name in predictors}
    for name, p in predictors.items():
        timed(lambda p=p, s=stats[name]: p.predict_slice(image, s), 0, warmup=3)
    for _ in range(30):
        for name, p in predictors.items():
            latency[name] += timed(lambda p=p, s=stats[name]: p.predict_slice(image, s), 1, 0)
    names = list(predictors)
    cases = [(predictors[n], batch) for batch in batches for n in names]
    # with 1 FLOP per slice the ratios scale linearly to each schedule's own FLOPs
    ratios = forward_vs_ceiling(cases, 1.0, rounds=args.rounds)
    rows = {n: {"gflop_per_slice": flops[n] / 1e9} for n in names}
    for (predictor, batch), (_, ceiling, ratio) in zip(cases, ratios, strict=True):
        name = next(n for n in names if predictors[n] is predictor)
        rows[name][f"ratio_batch{batch}_pct"] = ratio * flops[name]
        rows[name][f"ceiling_batch{batch}_gflops"] = ceiling
    for name in names:
        rows[name]["slice_ms_median"] = statistics.median(latency[name]) * 1e3
    header = "".join(f"{'fwd/ceil b' + str(b):>13s}" for b in batches)
    sys.stdout.write(f"{'widths':28s} {'GFLOP':>6s} {'slice ms':>8s}{header}\n")
    for name, row in rows.items():
        ratios_text = "".join(f"{row[f'ratio_batch{b}_pct']:12.1f}%" for b in batches)
        sys.stdout.write(
            f"{name:28s} {row['gflop_per_slice']:6.2f} {row['slice_ms_median']:8.1f}{ratios_text}\n"
        )
    if args.json:
        with open(args.json, "w") as handle:
            table = {"threads": args.threads, "rounds": args.rounds, "batches": batches}
            table |= {"isa": args.isa, "precision": precision}
            json.dump({**table, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
