"""Where the forward pass loses to the convolution ceiling: every conv of a model, timed alone.

Runs each convolution of the (BatchNorm-folded) model on the input it sees for a
batch of 256x256 slices, in the predictor's precision and memory layout, and prints
its share of the FLOPs, its time and its GFLOP/s against the 64->64 ceiling. A
second table times 3x3 convolutions of the same size at several channel widths,
which shows how narrow layers fill this CPU's vector lanes::

    python benchmarks/layer_efficiency.py --threads 2 --json docs/layer_efficiency.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="bundled name or checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from napari_unet.core.benchmark import conv_ceiling_gflops, timed
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model

    torch.set_num_threads(args.threads)
    # unfused, so each convolution is a module to time on its own
    predictor = Predictor(get_model(args.model), device="cpu", fused=False)
    fmt, precision, dtype = predictor.memory_format, predictor.precision, predictor.dtype
    ceiling = conv_ceiling_gflops(predictor, args.repeats)

    inputs: dict[str, torch.Tensor] = {}
    convs = {
        name: module
        for name, module in predictor.model.named_modules()
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
    }
    handles = [
        module.register_forward_hook(
            lambda m, i, o, n=name: inputs.__setitem__(n, i[0].detach().clone())
        )
        for name, module in convs.items()
    ]
    x = torch.randn(args.batch, predictor.bundle.config.in_channels, 256, 256).to(dtype)
    with torch.inference_mode():
        predictor.model(x.contiguous(memory_format=fmt))
    for handle in handles:
        handle.remove()

    rows, total_time, total_flops = [], 0.0, 0.0
    for name, conv in convs.items():
        tensor = inputs[name].contiguous(memory_format=fmt)
        with torch.inference_mode():
            out = conv(tensor)
            seconds = statistics.median(timed(lambda c=conv, t=tensor: c(t), args.repeats))
        kernel = conv.weight.shape[2] * conv.weight.shape[3]
        if isinstance(conv, torch.nn.ConvTranspose2d):
            flops = 2.0 * tensor.numel() * kernel * conv.out_channels
        else:
            flops = 2.0 * out.numel() * kernel * conv.in_channels // conv.groups
        total_time += seconds
        total_flops += flops
        rows.append(
            {
                "layer": name,
                "in": conv.in_channels,
                "out": conv.out_channels,
                "size": f"{tensor.shape[-2]}x{tensor.shape[-1]}",
                "gflop": flops / 1e9,
                "ms": seconds * 1e3,
                "gflops_per_s": flops / seconds / 1e9,
                "of_ceiling_pct": flops / seconds / 1e9 / ceiling * 100,
            }
        )
    widths = []
    for channels in (8, 12, 16, 24, 32, 48, 64):
        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).eval()
        conv = conv.to(dtype=dtype, memory_format=fmt)
        tensor = torch.randn(args.batch, channels, 256, 256).to(dtype)
        tensor = tensor.contiguous(memory_format=fmt)
        with torch.inference_mode():
            seconds = statistics.median(timed(lambda c=conv, t=tensor: c(t), args.repeats))
        flops = 2.0 * args.batch * 256 * 256 * 9 * channels * channels
        widths.append(
            {"channels": channels, "ms": seconds * 1e3, "gflops_per_s": flops / seconds / 1e9}
        )

    out = sys.stdout
    out.write(f"precision {precision}, layout {fmt}, batch {args.batch}, threads {args.threads}\n")
    out.write(f"conv ceiling (64->64 3x3, 4x128x128): {ceiling:.1f} GFLOP/s\n\n")
    out.write(f"{'layer':28s} {'in':>4s} {'out':>4s} {'size':>9s} {'GFLOP':>7s} {'ms':>8s} "
              f"{'GFLOP/s':>8s} {'% ceil':>7s}\n")  # fmt: skip
    for r in rows:
        out.write(
            f"{r['layer']:28s} {r['in']:4d} {r['out']:4d} {r['size']:>9s} {r['gflop']:7.3f} "
            f"{r['ms']:8.2f} {r['gflops_per_s']:8.1f} {r['of_ceiling_pct']:7.1f}\n"
        )
    overall = total_flops / total_time / 1e9
    out.write(
        f"{'all convolutions, timed alone':28s} {'':4s} {'':4s} {'':>9s} "
        f"{total_flops / 1e9:7.3f} {total_time * 1e3:8.2f} {overall:8.1f} "
        f"{overall / ceiling * 100:7.1f}\n\n"
    )
    out.write("3x3 conv, C->C channels, 256x256:\n")
    for w in widths:
        out.write(
            f"  C={w['channels']:3d}: {w['ms']:7.2f} ms  {w['gflops_per_s']:7.1f} GFLOP/s  "
            f"{w['gflops_per_s'] / ceiling * 100:5.1f} % of ceiling\n"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "precision": precision,
                    "batch": args.batch,
                    "threads": args.threads,
                    "ceiling_gflops": ceiling,
                    "layers": rows,
                    "all_convolutions_gflops": overall,
                    "widths": widths,
                },
                handle,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
