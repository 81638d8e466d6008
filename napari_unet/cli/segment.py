"""``predict``, ``info``, ``sizes``, ``benchmark`` and ``demo``: using a model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .progress import ProgressBar


def cmd_predict(args: argparse.Namespace) -> int:
    from ..core.checkpoint import CheckpointError
    from ..core.inference import Predictor
    from ..core.io import ImageReadError, ImageWriteError
    from ..core.models import get_model
    from ..core.pipeline import segment_file

    try:
        bundle = get_model(_model_source(args))
        predictor = Predictor(
            bundle,
            device=args.device,
            precision=args.precision,
            resample=not args.native_grid,
        )
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    for source in args.inputs:
        bar = ProgressBar(f"segmenting {Path(source).name}")
        try:
            result = segment_file(
                predictor,
                source,
                args.output,
                threshold=args.threshold,
                probabilities=args.probabilities,
                overwrite=args.overwrite,
                progress=lambda event, bar=bar: bar.update(event.done, event.total),
                volume=args.volume,
                mirror=args.mirror,
            )
        except (ImageReadError, ImageWriteError, ValueError, OSError) as exc:
            failures += 1
            print(f"error: {exc}", file=sys.stderr)
            continue
        finally:
            bar.close()
        extra = f", probabilities {result.probability_path}" if result.probability_path else ""
        print(
            f"{source}: {result.lesions} lesion(s), {result.lesion_ml:.2f} mL -> "
            f"{result.mask_path}{extra}"
        )
    if failures:
        print(f"{failures} of {len(args.inputs)} input(s) failed", file=sys.stderr)
    return 1 if failures else 0


def _model_source(args: argparse.Namespace):
    if getattr(args, "model", None):
        return args.model
    workspace = getattr(args, "workspace", None)
    if workspace:
        try:
            from ..core.registry import active_model_path
        except ImportError:  # the registry arrives with fine-tuning
            return None
        return active_model_path(workspace)
    return None


def cmd_info(args: argparse.Namespace) -> int:
    from ..core.sizes import trace_stages
    from ..core.unet import UNet, UNetConfig, count_parameters

    if args.paper or not args.model:
        config = UNetConfig.paper() if args.paper else None
        if config is None:
            from ..core.models import get_model

            bundle = get_model(None)
            config = bundle.config
    else:
        from ..core.models import get_model

        config = get_model(args.model).config
    print(f"config: {config.to_json()}")
    print(f"parameters: {count_parameters(UNet(config)):,}")
    size = args.size or (572 if config.padding == "valid" else 256)
    print(f"{'stage':20s} {'H x W x C':>20s}")
    for stage in trace_stages(size, config):
        print(f"{stage.name:20s} {stage.height:>6d} x {stage.width:<5d} x {stage.channels:<6d}")
    return 0


def cmd_sizes(args: argparse.Namespace) -> int:
    from ..core.sizes import legal_input_sizes
    from ..core.unet import UNetConfig

    config = UNetConfig(depth=args.depth, padding=args.padding)
    print(f"{'input':>6s} {'output':>6s}")
    for size, out in legal_input_sizes(config, args.min, args.max):
        print(f"{size:6d} {out:6d}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    import torch

    from ..core.benchmark import run
    from ..core.device import select_device

    try:
        select_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(
        args.model,
        repeats=args.repeats,
        output=Path(args.json),
        skip=tuple(args.skip),
        device=args.device,
    )
    print(report.table())
    print(f"machine: {report.machine}")
    print(f"wrote {args.json}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..core.demo import run_demo

    return run_demo(Path(args.output), device=args.device)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands."""
    p = sub.add_parser("predict", help="segment NIfTI files or DICOM folders")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="NIfTI file or DICOM folder")
    p.add_argument("--output", "-o", required=True, help="folder for <name>_lesion.nii.gz")
    p.add_argument("--model", help="checkpoint (.safetensors) or bundled name (default lesion-t1)")
    p.add_argument("--workspace", help="use this workspace's active model version")
    p.add_argument("--threshold", type=float, help="probability threshold (default: the model's)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--probabilities", action="store_true", help="also write <name>_prob.nii.gz")
    p.add_argument("--volume", type=int, help="for 4D inputs: which volume to segment")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument(
        "--mirror",
        action="store_true",
        help="test-time augmentation: average with the left-right mirrored pass (about 2x time)",
    )
    p.add_argument(
        "--native-grid",
        action="store_true",
        help="run on the scan's own pixels instead of resampling each slice to the pixel "
        "spacing the model was trained at (1 mm for the bundled models)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto: bf16 where the hardware runs it natively (same Dice, see performance.md)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="a model's config, parameter count and stage shapes")
    p.add_argument("--model", help="checkpoint path or bundled name")
    p.add_argument("--paper", action="store_true", help="the 2015 paper configuration")
    p.add_argument("--size", type=int, help="input side length for the shape table")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("sizes", help="legal input sizes and their output sizes")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--padding", choices=["valid", "same"], default="valid")
    p.add_argument("--min", type=int, default=100)
    p.add_argument("--max", type=int, default=600)
    p.set_defaults(func=cmd_sizes)

    p = sub.add_parser("benchmark", help="latency, throughput and memory; prints a table")
    p.add_argument("--model", help="checkpoint path or bundled name")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--json", default="benchmark.json", help="where to write the results")
    p.add_argument("--skip", nargs="*", default=[], choices=["volume", "train", "paper", "monai"])
    p.add_argument(
        "--device", default="cpu", help="cpu (default: the CPU table), cuda or cuda:N (GPU table)"
    )
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("demo", help="headless: segment the sample brain and write the results")
    p.add_argument("--output", "-o", default="out/demo")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_demo)
