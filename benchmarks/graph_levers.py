"""Two rewrites of the expanding path, measured against the shipped fused graph.

For every expanding-path level of the default model, in the predictor's precision and
memory layout, at batch 1 (a slice) and 4 (how volumes run):

* **up-convolution**: the 2x2, stride-2 ``ConvTranspose2d`` as the shipped graph runs it,
  against the same map as one matrix product (pixels x input channels times input
  channels x 2*2*output channels) followed by a permute into the up-sampled layout;
* **skip join**: the shipped split convolution (the up-sampled half convolved first, the
  skip half added as a oneDNN post-op, no concatenated map) against building the
  concatenation and running one convolution over it.

Each pair is timed round-robin (one call of each per round, medians over the rounds), so
a drift of the shared host moves both sides alike, and each rewrite's output is compared
with the shipped one (max |difference|)::

    python benchmarks/graph_levers.py --threads 2 --json docs/graph_levers_session19.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch


def upconv_as_matmul(up: torch.nn.ConvTranspose2d):
    """``up`` (2x2, stride 2) as addmm + permute; returns a channels-last NCHW view."""
    in_ch, out_ch = up.in_channels, up.out_channels
    weight = up.weight.detach().permute(0, 2, 3, 1).reshape(in_ch, 4 * out_ch).contiguous()
    bias = up.bias.detach().repeat(4)

    def run(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        y = torch.addmm(bias, pixels, weight).view(n, h, w, 2, 2, out_ch)
        return y.permute(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, out_ch).permute(0, 3, 1, 2)

    return run


def round_robin(calls: list, rounds: int) -> list[float]:
    """Median seconds per call of each callable, timed one after the other each round."""
    from napari_unet.core.benchmark import timed

    for call in calls:
        timed(call, 0, warmup=5)
    samples = [[] for _ in calls]
    for _ in range(rounds):
        for index, call in enumerate(calls):
            samples[index] += timed(call, 1, warmup=0)
    return [statistics.median(s) for s in samples]


def measure(block, joined, matmul, x: torch.Tensor, skip: torch.Tensor, rounds: int):
    """Max |difference| of each rewrite and the median time of all four calls."""
    up = block.up(x)

    def split():
        return block.first(skip, up)

    def concatenated():
        return joined(torch.cat([skip, up], 1))

    up_error = (matmul(x).float() - up.float()).abs().max().item()
    join_error = (concatenated().float() - split().float()).abs().max().item()
    times = round_robin([lambda: block.up(x), lambda: matmul(x), split, concatenated], rounds)
    return up_error, join_error, times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="bundled name or checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from napari_unet.core.fusion import ConvReLU, FusedUp
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model

    torch.set_num_threads(args.threads)
    predictor = Predictor(get_model(args.model), device="cpu")
    fmt, dtype = predictor.memory_format, predictor.dtype
    ups = [m for m in predictor.model.modules() if isinstance(m, FusedUp)]
    if not ups:
        sys.stderr.write("error: the predictor's graph has no fused expanding-path blocks\n")
        return 2
    shapes: dict[int, tuple] = {}  # each block's (input, skip) shapes on a 256x256 slice
    hooks = [
        b.register_forward_pre_hook(
            lambda m, inputs: shapes.__setitem__(id(m), tuple(t.shape for t in inputs))
        )
        for b in ups
    ]
    rows = []
    with torch.inference_mode():
        channels = predictor.bundle.config.in_channels
        predictor.run_model(
            torch.zeros(1, channels, 256, 256).to(dtype).contiguous(memory_format=fmt)
        )
        for hook in hooks:
            hook.remove()
        for block in ups:
            in_ch, out_ch = block.up.in_channels, block.up.out_channels
            skip_ch = block.first.skip_weight.shape[1]
            conv = torch.nn.Conv2d(skip_ch + out_ch, out_ch, 3, padding=1)
            conv.weight.copy_(torch.cat([block.first.skip_weight, block.first.up_weight], 1))
            conv.bias.copy_(block.first.bias)
            joined = ConvReLU(conv.to(dtype).to(memory_format=fmt))
            matmul = upconv_as_matmul(block.up)
            (_, _, height, width), _ = shapes[id(block)]  # the skip is cropped to the up map
            for batch in (1, 4):
                x = torch.randn(batch, in_ch, height, width).to(dtype).contiguous(memory_format=fmt)
                up = block.up(x)
                skip = torch.randn(batch, skip_ch, *up.shape[-2:]).to(dtype)
                skip = skip.contiguous(memory_format=fmt)
                up_error, join_error, times = measure(block, joined, matmul, x, skip, args.rounds)
                rows.append(
                    {
                        "level": f"{in_ch}->{out_ch} to {up.shape[-2]}x{up.shape[-1]}",
                        "batch": batch,
                        "upconv_us": times[0] * 1e6,
                        "upconv_matmul_us": times[1] * 1e6,
                        "upconv_max_abs_diff": up_error,
                        "split_join_us": times[2] * 1e6,
                        "concat_join_us": times[3] * 1e6,
                        "join_max_abs_diff": join_error,
                    }
                )
    sys.stdout.write(
        f"precision {predictor.precision}, {args.threads} threads, {args.rounds} rounds\n"
        f"{'level':22s} {'batch':>5s} {'convT us':>9s} {'matmul us':>10s} "
        f"{'split us':>9s} {'cat+conv us':>12s}\n"
    )
    for row in rows:
        sys.stdout.write(
            f"{row['level']:22s} {row['batch']:5d} {row['upconv_us']:9.1f} "
            f"{row['upconv_matmul_us']:10.1f} {row['split_join_us']:9.1f} "
            f"{row['concat_join_us']:12.1f}\n"
        )
    if args.json:
        with open(args.json, "w") as handle:
            meta = {"precision": predictor.precision, "threads": args.threads}
            json.dump({**meta, "rounds": args.rounds, "rows": rows}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
