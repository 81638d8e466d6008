"""Would a space-to-depth stem lift the forward/ceiling ratio? Untrained networks, timed.

The default's full-resolution level (16 channels at 256x256) runs at half the ceiling on
CPUs whose matrix units take 32 bf16 values a row (AMX). A space-to-depth stem folds each
2x2 block of pixels into channels (``pixel_unshuffle``: C x 256 x 256 becomes 4C x 128 x
128, nothing lost), runs the U-Net at half resolution with wider levels, and unfolds 4
output channels back into a full-resolution map (``pixel_shuffle``). This times such
networks, untrained (weights do not change the speed), through the same folded and fused
bf16/fp32 graph as the shipped path, against the shipped default and the ceiling
convolution, round-robin (each round times the ceiling just before each network)::

    python benchmarks/s2d_stem.py --threads 2 --json docs/s2d_stem.json

Whether such a network segments as well is not measured here: that needs training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

DESIGNS = ((32, 64, 128, 256), (32, 64, 128, 192, 256), (48, 64, 128, 256), (64, 64, 128, 256))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import torch
    from torch import nn

    from napari_unet.core.benchmark import _ceiling_conv, conv_flops, machine_info
    from napari_unet.core.fusion import fold_batchnorm, fuse_conv_relu
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model
    from napari_unet.core.unet import UNet, UNetConfig

    torch.set_num_threads(args.threads)
    shipped = get_model(None)
    predictor = Predictor(shipped, device="cpu")
    dtype, layout = predictor.dtype, predictor.memory_format
    channels = shipped.config.in_channels

    class SpaceToDepth(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            folded = nn.functional.pixel_unshuffle(x, 2)
            return nn.functional.pixel_shuffle(self.inner(folded), 2)

    def build(widths: tuple[int, ...]) -> tuple[nn.Module, float, int]:
        config = UNetConfig.from_dict(
            {
                **shipped.config.to_dict(),
                "in_channels": channels * 4,
                "num_classes": 4,
                "base_width": widths[0],
                "level_widths": widths,
                "depth": len(widths) - 1,
            }
        )
        torch.manual_seed(0)
        network = UNet(config).eval()
        flops = conv_flops(network, (1, channels * 4, 128, 128))
        params = sum(p.numel() for p in network.parameters())
        network = fold_batchnorm(network) if config.norm == "batch" else network
        network = network.to(dtype, memory_format=layout).eval()
        if predictor.fused:
            fuse_conv_relu(network)
        return SpaceToDepth(network), flops, params

    shipped_name = "-".join(map(str, shipped.config.widths())) + " (shipped)"
    networks = {
        shipped_name: (
            predictor.model,
            conv_flops(shipped.model, (1, channels, 256, 256)),
            sum(p.numel() for p in shipped.model.parameters()),
        )
    }
    for widths in DESIGNS:
        networks["s2d " + "-".join(map(str, widths))] = build(widths)
    ceiling_run, ceiling_flops = _ceiling_conv(predictor)
    inputs = {
        batch: torch.randn(batch, channels, 256, 256).to(dtype).contiguous(memory_format=layout)
        for batch in (1, 4)
    }

    def seconds(function) -> float:
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    samples = {(name, batch): [] for name in networks for batch in inputs}
    with torch.inference_mode():
        for network, *_ in networks.values():
            for x in inputs.values():
                network(x)
        for _ in range(args.rounds):
            for name, (network, flops, _) in networks.items():
                for batch, x in inputs.items():
                    ceiling = ceiling_flops / seconds(ceiling_run) / 1e9
                    passes = 8 // batch
                    per_pass = seconds(lambda n=network, x=x, k=passes: [n(x) for _ in range(k)])
                    per_pass /= passes
                    achieved = batch * flops / per_pass / 1e9
                    samples[(name, batch)].append((per_pass / batch * 1e3, achieved / ceiling))
    rows = {}
    for name, (_, flops, params) in networks.items():
        rows[name] = {"gflop_per_slice": flops / 1e9, "parameters": params}
        for batch in inputs:
            values = samples[(name, batch)]
            rows[name][f"ms_per_slice_batch{batch}"] = statistics.median(v[0] for v in values)
            rows[name][f"ratio_batch{batch}_pct"] = 100 * statistics.median(v[1] for v in values)
    out = sys.stdout
    out.write(f"{'network':30s} {'GFLOP':>6s} {'params':>7s} ")
    out.write(f"{'ms b1':>7s} {'fwd/ceil b1':>12s} {'ms/slice b4':>12s} {'fwd/ceil b4':>12s}\n")
    for name, row in rows.items():
        out.write(
            f"{name:30s} {row['gflop_per_slice']:6.2f} {row['parameters'] / 1e6:6.2f}M "
            f"{row['ms_per_slice_batch1']:7.2f} {row['ratio_batch1_pct']:11.1f}% "
            f"{row['ms_per_slice_batch4']:12.2f} {row['ratio_batch4_pct']:11.1f}%\n"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"machine": machine_info(), "rounds": args.rounds, "rows": rows}, handle, indent=2
            )
        out.write(f"wrote {args.json}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
