"""``synth`` and ``train``: synthetic data and (continued) training."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .. import __version__
from .progress import ProgressBar


def cmd_synth(args: argparse.Namespace) -> int:
    from ..core.synth.dataset import write_synthetic_dataset

    bar = ProgressBar("generating cases")
    root = write_synthetic_dataset(
        args.output,
        args.train,
        args.val,
        seed=args.seed,
        mode=args.mode,
        workers=args.workers,
        progress=lambda d, n: bar.update(d, n),
        acquisition=args.acquisition,
        val_start=args.val_start,
    )
    bar.close()
    first = f" (from synthval_{args.val_start:04d})" if args.val_start else ""
    print(
        f"wrote an nnU-Net raw dataset with {args.train} training and {args.val} validation "
        f"cases{first} to {root}"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from ..core.normalization import NormalizationSpec
    from ..core.spacing import training_pixel_spacing, training_slice_spacing
    from ..core.training.datasets import DatasetLayoutError, find_cases_in
    from ..core.training.slices import load_volumes, to_spacing
    from ..core.training.trainer import DEFAULT_MODEL, TrainConfig, train
    from ..core.unet import UNetConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    roots = [Path(d) for d in args.data] if args.data else [Path(args.output) / "synthetic_data"]
    data = roots[0]
    if not args.data and not (data / "dataset.json").exists():
        cmd_synth(
            argparse.Namespace(
                output=data,
                train=args.synthetic,
                val=args.val,
                seed=args.seed,
                mode=args.mode,
                workers=args.workers,
                acquisition="standard",
                val_start=0,
            )
        )
    try:
        cases = find_cases_in(roots, modality=args.modality)
    except DatasetLayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train_cases = [c for c in cases if c.split == "train"]
    val_cases = [c for c in cases if c.split == "val"]
    if not val_cases:  # real datasets without imagesTs: hold out a fixed 10%
        count = max(1, len(train_cases) // 10)
        val_cases, train_cases = train_cases[-count:], train_cases[:-count]
    if not train_cases:
        print(
            f"error: {', '.join(map(str, roots))} has no training case left after holding out "
            "validation cases; a dataset without imagesTs needs at least 2 cases",
            file=sys.stderr,
        )
        return 2
    image_channels = len(train_cases[0].images)
    context_slices = args.context_slices
    if args.previous_mask and not args.clicks:
        print("error: --previous-mask is a click-model option; add --clicks", file=sys.stderr)
        return 2
    from ..core.click_maps import CLICK_CHANNELS, PREVIOUS_MASK_CHANNELS

    click_channels = (
        (PREVIOUS_MASK_CHANNELS if args.previous_mask else CLICK_CHANNELS) if args.clicks else 0
    )
    try:
        model_config = UNetConfig.from_dict(
            {
                **DEFAULT_MODEL.to_dict(),
                "in_channels": image_channels * (2 * context_slices + 1),
                "base_width": args.widths[0] if args.widths else args.base_width,
                **({"level_widths": args.widths} if args.widths else {}),
            }
        )
    except ValueError as exc:
        print(f"error: {exc} (check --widths / --base-width)", file=sys.stderr)
        return 2
    init_from = None
    if args.init:
        from ..core.checkpoint import load_checkpoint

        init_from = load_checkpoint(args.init)
        if args.clicks and not init_from.click_channels:
            from ..core.training.click_training import with_click_channels

            init_from = with_click_channels(init_from)
        if args.previous_mask and init_from.click_channels != 3:
            from ..core.training.click_training import with_previous_mask_channel

            try:
                init_from = with_previous_mask_channel(init_from)
            except ValueError as exc:
                print(f"error: {args.init}: {exc}", file=sys.stderr)
                return 2
        if context_slices and context_slices != init_from.context_slices:
            from ..core.training.context_init import with_context_slices

            try:
                init_from = with_context_slices(init_from, context_slices)
            except ValueError as exc:
                print(f"error: {args.init}: {exc}", file=sys.stderr)
                return 2
        if args.widths and args.widths != init_from.config.widths():
            from ..core.training.widen import with_widths

            try:
                init_from = with_widths(init_from, args.widths, seed=args.seed)
            except ValueError as exc:
                print(f"error: {args.init}: {exc}", file=sys.stderr)
                return 2
        model_config = init_from.config
        context_slices = init_from.context_slices
    elif args.clicks:
        model_config = UNetConfig.from_dict(
            {**model_config.to_dict(), "in_channels": model_config.in_channels + click_channels}
        )
    config = TrainConfig(
        model=model_config,
        normalization=NormalizationSpec(),
        steps=args.steps,
        batch_size=args.batch_size,
        patch=args.patch,
        lr=args.lr,
        val_every=args.val_every,
        seed=args.seed,
        device=args.device,
        lesion_fraction=args.lesion_fraction,
        warmup=args.warmup,
        min_lesion_voxels=args.min_lesion_voxels,
        min_lesion_extent_mm=args.min_lesion_extent_mm,
        precision=args.precision,
        hard_negative_fraction=args.hard_negative_fraction,
        mine_every=args.mine_every,
        lesion_wise_weight=args.lesion_wise_weight,
        click_channels=init_from.click_channels if init_from is not None else click_channels,
        context_slices=context_slices,
    )
    bar = ProgressBar("loading volumes")
    train_volumes = load_volumes(
        train_cases, config.normalization, image_channels, lambda d, n: bar.update(d, n)
    )
    val_volumes = load_volumes(val_cases, config.normalization, image_channels)
    bar.close()
    # every case at one spacing, the one inference will resample scans to: the starting
    # model's, else the training data's median (as nnU-Net does)
    spacings = [volume.spacing for volume in train_volumes]
    pixel_mm = training_pixel_spacing(spacings)
    slice_mm = training_slice_spacing(spacings) if context_slices else None
    if init_from is not None and init_from.input_spacing_mm is not None:
        pixel_mm = init_from.input_spacing_mm
        slice_mm = init_from.slice_spacing_mm if context_slices else None
    train_volumes = [to_spacing(volume, pixel_mm, slice_mm) for volume in train_volumes]
    val_volumes = [to_spacing(volume, pixel_mm, slice_mm) for volume in val_volumes]
    provenance = {
        "data": str(data) if len(roots) == 1 else [str(r) for r in roots],
        "train_cases": len(train_volumes),
        "val_cases": [v.case for v in val_volumes],
        "napari_unet": __version__,
    }
    if init_from is not None:
        provenance["init_from"] = {"path": str(args.init), "version_id": init_from.version_id}
        grown = ("expanded_from", "widened_from", "context_added")  # set when --init was grown
        provenance["init_from"] |= {
            k: init_from.provenance[k] for k in grown if k in init_from.provenance
        }
    bar = ProgressBar("training")
    generator = train(
        train_volumes,
        val_volumes,
        config,
        args.output,
        resume=not args.no_resume,
        provenance=provenance,
        init_from=init_from,
    )
    while True:
        try:
            event = next(generator)
        except StopIteration as stop:
            best = stop.value
            break
        postfix = f"loss {event.loss:.4f}"
        if event.val_dice is not None:
            postfix = (
                f"val dice {event.val_dice:.4f} f1 {event.val_f1:.4f} "
                f"(best {event.best_dice:.4f}) {postfix}"
            )
        bar.update(event.step, event.total, postfix)
    bar.close()
    print(f"best checkpoint: {best}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands."""
    p = sub.add_parser("synth", help="generate a synthetic stroke dataset (nnU-Net raw layout)")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--train", type=int, default=64, help="training cases")
    p.add_argument("--val", type=int, default=10, help="validation cases (the fixed split)")
    p.add_argument(
        "--val-start",
        type=int,
        default=0,
        help="first validation case to write (e.g. 50 writes synthval_0050 onwards: a fresh "
        "held-out set that no earlier run has seen)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mode",
        choices=["hypo", "hyper"],
        default="hypo",
        help="hypointense (T1, chronic) or hyperintense (DWI/FLAIR look) lesions",
    )
    p.add_argument(
        "--acquisition",
        choices=["standard", "wide"],
        default="standard",
        help="training-case acquisition ranges; 'wide' adds stronger bias, blur and random "
        "T1 contrast curves (validation cases always use 'standard')",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a lesion model (synthetic data or a real dataset)")
    p.add_argument("--output", "-o", required=True, help="run folder (checkpoints, history)")
    p.add_argument(
        "--data",
        action="append",
        help="nnU-Net raw or BIDS-like dataset (repeat to train on several; validation comes "
        "from those with imagesTs); default: synthetic",
    )
    p.add_argument("--modality", default="T1w", help="BIDS suffix of the image (T1w, dwi, ...)")
    p.add_argument("--synthetic", type=int, default=64, help="synthetic training cases")
    p.add_argument("--val", type=int, default=10, help="synthetic validation cases")
    p.add_argument("--mode", choices=["hypo", "hyper"], default="hypo")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=160)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--base-width", type=int, default=12)
    p.add_argument(
        "--widths",
        type=lambda text: [int(w) for w in text.split(",")],
        metavar="W0,W1,...",
        help="channels per level, top first (depth + 1 of them), instead of doubling "
        "from --base-width; e.g. 16,24,48,96,192 (see benchmarks/width_schedules.py); with "
        "--init, wider levels than the initial model's are added with zero outgoing weights, "
        "so training starts from its output",
    )
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--no-resume", action="store_true", help="start over even if a run exists")
    p.add_argument("--init", help="start from this checkpoint's weights (continued training)")
    p.add_argument(
        "--lesion-fraction", type=float, default=0.6, help="share of patches centred near a lesion"
    )
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument(
        "--min-lesion-voxels",
        type=int,
        default=0,
        help="post-processing: drop 3D components smaller than this",
    )
    p.add_argument(
        "--min-lesion-extent-mm",
        type=float,
        default=0.0,
        help="post-processing: drop 3D components thinner than this along the axial axis",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="bf16 autocast (auto: where the CPU/GPU runs bf16 natively)",
    )
    p.add_argument(
        "--hard-negative-fraction",
        type=float,
        default=0.0,
        help="share of patches centred on false positives mined from the current model",
    )
    p.add_argument(
        "--lesion-wise-weight",
        type=float,
        default=0.0,
        help="weight of a per-lesion Dice term that counts every lesion equally (small lesions)",
    )
    p.add_argument("--mine-every", type=int, default=250, help="steps between mining rounds")
    p.add_argument(
        "--clicks",
        action="store_true",
        help="train a click-guided model (two click channels, simulated users); with --init, "
        "start from that automatic model",
    )
    p.add_argument(
        "--previous-mask",
        action="store_true",
        help="with --clicks: a third click channel holding the object before the latest "
        "click (RITM-style); with --init of a two-channel click model, that channel is "
        "added with zero weights",
    )
    p.add_argument(
        "--context-slices",
        type=int,
        default=0,
        metavar="K",
        help="2.5D input: K neighbouring slices on each side as extra channels (default 0; "
        "with --init, the initial model's value; larger than --init's, the model is grown "
        "with zero weights on the added neighbours, so it starts from --init's output)",
    )
    p.set_defaults(func=cmd_train)
