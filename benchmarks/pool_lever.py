"""Does the four-view 2x2 max-pool of core/fusion.py beat nn.MaxPool2d in the shipped path?

Builds the shipped predictor twice, once as it ships (MaxPool2x2) and once with every
pool put back to ``nn.MaxPool2d(2)``, and measures both round-robin against the ceiling
convolution, as ``napari-unet benchmark`` does, at batch 1 (a slice) and the predictor's
batch (a volume). Also checks that both give the same probabilities::

    python benchmarks/pool_lever.py --threads 2 --json docs/pool_lever.json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="bundled name or checkpoint")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", help="write the table here")
    args = parser.parse_args()

    from napari_unet.core.benchmark import conv_flops, forward_vs_ceiling, machine_info
    from napari_unet.core.fusion import MaxPool2x2
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model

    torch.set_num_threads(args.threads)
    bundle = get_model(args.model)
    four_view = Predictor(bundle, device="cpu")
    generic = Predictor(bundle, device="cpu")
    swapped = 0
    for parent in list(generic.model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, MaxPool2x2):
                setattr(parent, name, torch.nn.MaxPool2d(2))
                swapped += 1
    if not swapped:
        print("error: the shipped path has no MaxPool2x2 (not fused here?)", file=sys.stderr)
        return 2
    x = torch.randn(2, bundle.config.in_channels, 256, 256).to(four_view.dtype)
    x = x.contiguous(memory_format=four_view.memory_format)
    with torch.inference_mode():
        identical = bool(torch.equal(four_view.model(x), generic.model(x)))
    flops = conv_flops(bundle.model.eval(), (1, bundle.config.in_channels, 256, 256))
    batches = sorted({1, four_view.batch_size})
    cases = [(p, b) for b in batches for p in (four_view, generic)]
    results = forward_vs_ceiling(cases, flops, rounds=args.rounds)
    rows = []
    print(
        f"{four_view.precision}, channels-last, fused; {swapped} pools; outputs identical: "
        f"{identical}"
    )
    print(
        f"{'pool':22s} {'batch':>5s} {'ms/slice':>9s} {'GFLOP/s':>8s} {'ceiling':>8s} "
        f"{'fwd/ceil':>8s}"
    )
    for (predictor, batch), (achieved, ceiling, ratio) in zip(cases, results, strict=True):
        name = "four-view (shipped)" if predictor is four_view else "nn.MaxPool2d"
        ms = flops / achieved / 1e6
        rows.append(
            {
                "pool": name,
                "batch": batch,
                "ms_per_slice": ms,
                "gflops": achieved,
                "ceiling_gflops": ceiling,
                "ratio_pct": ratio,
            }
        )
        print(f"{name:22s} {batch:5d} {ms:9.2f} {achieved:8.1f} {ceiling:8.1f} {ratio:7.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine_info(),
                    "threads": args.threads,
                    "rounds": args.rounds,
                    "outputs_identical": identical,
                    "rows": rows,
                },
                f,
                indent=2,
            )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
