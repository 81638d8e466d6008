"""The ``napari-unet`` command: headless access to everything in the core."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from . import __version__

log = logging.getLogger("napari_unet")


class ProgressBar:
    """tqdm on a terminal, a plain line every 10% otherwise (logs, CI)."""

    def __init__(self, description: str, total: int | None = None) -> None:
        self.description = description
        self.total = total
        self._last_decile = -1
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, leave=False)

    def update(self, done: int, total: int, postfix: str = "") -> None:
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            if postfix:
                self._bar.set_postfix_str(postfix)
            self._bar.refresh()
            return
        decile = int(10 * done / max(total, 1))
        if decile != self._last_decile or postfix.startswith("val"):
            self._last_decile = decile
            print(
                f"{self.description}: {done}/{total} {postfix}".rstrip(),
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


# -- predict -------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    from .core.checkpoint import CheckpointError
    from .core.inference import Predictor
    from .core.io import ImageReadError, ImageWriteError
    from .core.models import get_model
    from .core.pipeline import segment_file

    try:
        bundle = get_model(_model_source(args))
        predictor = Predictor(bundle, device=args.device, precision=args.precision)
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
            from .core.registry import active_model_path
        except ImportError:  # the registry arrives with fine-tuning
            return None
        return active_model_path(workspace)
    return None


# -- synth / train / evaluate --------------------------------------------------------------
def cmd_synth(args: argparse.Namespace) -> int:
    from .core.synth.dataset import write_synthetic_dataset

    bar = ProgressBar("generating cases")
    root = write_synthetic_dataset(
        args.output,
        args.train,
        args.val,
        seed=args.seed,
        mode=args.mode,
        workers=args.workers,
        progress=lambda d, n: bar.update(d, n),
    )
    bar.close()
    print(
        f"wrote an nnU-Net raw dataset with {args.train} training and {args.val} validation "
        f"cases to {root}"
    )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .core.normalization import NormalizationSpec
    from .core.training.datasets import find_cases
    from .core.training.slices import load_volumes
    from .core.training.trainer import DEFAULT_MODEL, TrainConfig, train
    from .core.unet import UNetConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    data = Path(args.data) if args.data else Path(args.output) / "synthetic_data"
    if not args.data and not (data / "dataset.json").exists():
        cmd_synth(
            argparse.Namespace(
                output=data,
                train=args.synthetic,
                val=args.val,
                seed=args.seed,
                mode=args.mode,
                workers=args.workers,
            )
        )
    cases = find_cases(data, modality=args.modality)
    train_cases = [c for c in cases if c.split == "train"]
    val_cases = [c for c in cases if c.split == "val"]
    if not val_cases:  # real datasets without imagesTs: hold out a fixed 10%
        count = max(1, len(train_cases) // 10)
        val_cases, train_cases = train_cases[-count:], train_cases[:-count]
    image_channels = len(train_cases[0].images)
    context_slices = args.context_slices
    model_config = UNetConfig.from_dict(
        {
            **DEFAULT_MODEL.to_dict(),
            "in_channels": image_channels * (2 * context_slices + 1),
            "base_width": args.base_width,
        }
    )
    init_from = None
    if args.init:
        from .core.checkpoint import load_checkpoint

        init_from = load_checkpoint(args.init)
        if args.clicks and not init_from.click_channels:
            from .core.training.click_training import with_click_channels

            init_from = with_click_channels(init_from)
        model_config = init_from.config
        context_slices = init_from.context_slices
    elif args.clicks:
        model_config = UNetConfig.from_dict(
            {**model_config.to_dict(), "in_channels": model_config.in_channels + 2}
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
        click_channels=2 if args.clicks else 0,
        context_slices=context_slices,
    )
    bar = ProgressBar("loading volumes")
    train_volumes = load_volumes(
        train_cases, config.normalization, image_channels, lambda d, n: bar.update(d, n)
    )
    val_volumes = load_volumes(val_cases, config.normalization, image_channels)
    bar.close()
    provenance = {
        "data": str(data),
        "train_cases": len(train_volumes),
        "val_cases": [v.case for v in val_volumes],
        "napari_unet": __version__,
    }
    if init_from is not None:
        provenance["init_from"] = {"path": str(args.init), "version_id": init_from.version_id}
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


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .core.evaluation import evaluate_paths

    try:
        results, summary = evaluate_paths(args.pred, args.truth)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'case':32s} {'dice':>7s} {'lesF1':>7s} {'|dV| mL':>8s} {'|dN|':>5s} {'HD95 mm':>8s}")
    for r in results:
        print(
            f"{r.case:32s} {r.dice:7.4f} {r.lesion_f1:7.4f} {r.abs_volume_diff_ml:8.3f} "
            f"{r.abs_lesion_count_diff:5d} {r.hd95_mm:8.2f}"
        )
    print(
        f"{'mean':32s} {summary['mean_dice']:7.4f} {summary['mean_lesion_f1']:7.4f} "
        f"{summary['mean_abs_volume_diff_ml']:8.3f} {summary['mean_abs_lesion_count_diff']:5.2f} "
        f"{summary['mean_hd95_mm']:8.2f}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"cases": [r.to_dict() for r in results], "summary": summary}, indent=2)
        )
        print(f"wrote {args.json}")
    return 0


def cmd_evaluate_clicks(args: argparse.Namespace) -> int:
    """NoC@85/90 and Dice after 1/3/5 clicks for both click engines (simulated user)."""
    from .core.click_eval import evaluate_click_engines
    from .core.io import read_image
    from .core.models import get_model
    from .core.training.datasets import find_cases

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cases = [c for c in find_cases(args.data) if c.split == args.split]
    if not cases:
        print(f"error: {args.data} has no {args.split} cases", file=sys.stderr)
        return 2
    loaded = [(c.case, read_image(c.images[0]).data, read_image(c.mask).data > 0.5) for c in cases]
    bar = ProgressBar("simulating clicks")
    result = evaluate_click_engines(
        loaded,
        get_model(args.model),
        get_model(args.click_model),
        max_clicks=args.max_clicks,
        per_lesion=args.per_lesion,
        device=args.device,
        progress=lambda d, n: bar.update(d, n),
    )
    bar.close()
    zero = result["zero_clicks_dice"]
    print(f"{len(cases)} {args.split} cases, {result['guided'].get('tasks', 0)} lesion slices")
    print(
        f"{'engine':34s} {'NoC@85':>7s} {'NoC@90':>7s} {'Dice@1':>7s} {'Dice@3':>7s} {'Dice@5':>7s}"
    )
    for label, key in (
        ("automatic model, no clicks", "automatic"),
        ("click-guided model, no clicks", "guided, no clicks"),
    ):
        print(f"{label:34s} {'':>7s} {'':>7s} Dice@0 {zero[key]:.3f}")
    for key, label in (
        ("baseline", "baseline (automatic model + clicks)"),
        ("guided", "click-guided U-Net"),
    ):
        r = result[key]
        print(
            f"{label:34s} {r['noc85']:7.2f} {r['noc90']:7.2f} {r['dice@1']:7.3f} "
            f"{r['dice@3']:7.3f} {r['dice@5']:7.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


# -- info / sizes / demo -------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from .core.sizes import trace_stages
    from .core.unet import UNet, UNetConfig, count_parameters

    if args.paper or not args.model:
        config = UNetConfig.paper() if args.paper else None
        if config is None:
            from .core.models import get_model

            bundle = get_model(None)
            config = bundle.config
    else:
        from .core.models import get_model

        config = get_model(args.model).config
    print(f"config: {config.to_json()}")
    print(f"parameters: {count_parameters(UNet(config)):,}")
    size = args.size or (572 if config.padding == "valid" else 256)
    print(f"{'stage':20s} {'H x W x C':>20s}")
    for stage in trace_stages(size, config):
        print(f"{stage.name:20s} {stage.height:>6d} x {stage.width:<5d} x {stage.channels:<6d}")
    return 0


def cmd_sizes(args: argparse.Namespace) -> int:
    from .core.sizes import legal_input_sizes
    from .core.unet import UNetConfig

    config = UNetConfig(depth=args.depth, padding=args.padding)
    print(f"{'input':>6s} {'output':>6s}")
    for size, out in legal_input_sizes(config, args.min, args.max):
        print(f"{size:6d} {out:6d}")
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    import torch

    from .core.benchmark import run

    if args.threads:
        torch.set_num_threads(args.threads)
    report = run(args.model, repeats=args.repeats, output=Path(args.json), skip=tuple(args.skip))
    print(report.table())
    print(f"machine: {report.machine}")
    print(f"wrote {args.json}")
    return 0


def _open_queue(args: argparse.Namespace):
    from .core.edit_queue import EditQueue
    from .core.workspace import resolve_workspace

    return EditQueue(resolve_workspace(args.workspace))


def cmd_queue(args: argparse.Namespace) -> int:
    from .core.edit_queue import QueueError
    from .core.io import GeometryMismatchError, ImageReadError
    from .core.workspace import WorkspaceError

    try:
        return _queue_action(args)
    except (QueueError, ImageReadError, WorkspaceError, GeometryMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _queue_action(args: argparse.Namespace) -> int:
    from .core import queue_io
    from .core.edit_queue import QueueError
    from .core.io import check_same_grid, read_image

    queue = _open_queue(args)
    if args.queue_command == "add":
        image = read_image(args.image)
        mask_image = read_image(args.mask)
        check_same_grid(mask_image, image, "a mask must be in its image's voxel grid")
        prediction = read_image(args.prediction).data if args.prediction else None
        axis = queue_io.resolve_axis(args.axis, image)
        slices = [int(s) for s in args.slices.split(",") if s.strip()] if args.slices else None
        if args.slices is not None and not slices:
            raise QueueError("--slices is empty")
        items = queue_io.queue_slices(
            queue, image, mask_image.data, prediction, slices, axis, args.split, args.note or ""
        )
        for item in items:
            print(
                f"queued item {item.id}: {item.axis_name} slice {item.slice_index} "
                f"(revision {item.revision}, {item.split}, {item.lesion_voxels} lesion voxels)"
            )
    elif args.queue_command == "list":
        items = queue.items(split=args.split, include_deleted=args.all, include_superseded=args.all)
        print(
            f"{'id':>5s} {'split':5s} {'rev':>3s} {'axis':9s} {'slice':>5s} {'lesion':>7s} "
            f"{'+':>6s} {'-':>6s} {'created':24s} source"
        )
        for i in items:
            flag = " (removed)" if i.deleted_at else ""
            print(
                f"{i.id:5d} {i.split:5s} {i.revision:3d} {i.axis_name:9s} {i.slice_index:5d} "
                f"{i.lesion_voxels:7d} {i.added_voxels:6d} {i.removed_voxels:6d} "
                f"{i.created_at:24s} {i.source_path}{flag}"
            )
        counts = queue.counts()
        print(f"current items: {counts['train']} train, {counts['val']} val")
    elif args.queue_command == "show":
        item = queue.get(args.id)
        print(json.dumps(item.summary(), indent=2))
        print(
            "history:", ", ".join(f"item {h.id} rev {h.revision}" for h in queue.history(args.id))
        )
    elif args.queue_command in ("remove", "restore"):
        item = getattr(queue, args.queue_command)(args.id)
        print(
            f"item {item.id} {'removed (undo: queue restore)' if item.deleted_at else 'restored'}"
        )
    elif args.queue_command == "split":
        item = queue.set_split(args.id, args.split)
        print(f"item {item.id} is now in {item.split}")
    elif args.queue_command == "export":
        export = queue_io.export_nnunet if args.format == "nnunet" else queue_io.export_nifti
        print(f"exported {len(queue.items())} items to {export(queue, args.output)}")
    elif args.queue_command == "check":
        problems = queue.check_integrity()
        print("\n".join(problems) if problems else "ok: database and every item verified")
        return 1 if problems else 0
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .core.edit_queue import QueueError
    from .core.finetune import FinetuneConfig, finetune
    from .core.registry import RegistryError

    replay = None
    if args.replay:
        from .core.training.datasets import find_cases
        from .core.training.slices import load_volumes

        bundle_spec = _registry(args).load(args.base).normalization
        cases = [c for c in find_cases(args.replay) if c.split == "train"][: args.replay_cases]
        replay = load_volumes(cases, bundle_spec, len(cases[0].images))
    world = _init_distributed(args.device)
    config = FinetuneConfig(
        steps=args.steps,
        seed=args.seed,
        device=args.device,
        promote=args.promote,
        lr=args.lr,
        shards=args.shards or world,
    )
    if args.epochs:
        from .core.edit_queue import EditQueue

        n_train = len(EditQueue(_registry(args).workspace).items(split="train"))
        config.steps = max(1, int(np.ceil(args.epochs * n_train / config.batch_size)))
    bar = ProgressBar("fine-tuning")
    try:
        generator = finetune(args.workspace, config, base=args.base, replay=replay)
        while True:
            try:
                event = next(generator)
            except StopIteration as stop:
                result = stop.value
                break
            bar.update(event.step, event.total, f"loss {event.loss:.4f}")
    except (QueueError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    if not result.candidate:  # a non-zero rank of a distributed run: rank 0 reports
        return 0
    print(f"candidate {result.candidate} (parent {result.base}) in {result.seconds:.1f} s")
    if result.base_metrics:
        b, c = result.base_metrics, result.candidate_metrics
        print(f"  validation items: {c['items']}")
        print(f"  Dice       base {b['dice']:.4f}  candidate {c['dice']:.4f}")
        print(f"  lesion F1  base {b['lesion_f1']:.4f}  candidate {c['lesion_f1']:.4f}")
        print(f"  |dV| mL    base {b['volume_error_ml']:.4f}  candidate {c['volume_error_ml']:.4f}")
    print(f"  {'PROMOTED (active)' if result.promoted else 'not promoted'}: {result.reason}")
    return 0


def _init_distributed(device: str) -> int:
    """Join the torchrun process group (gloo on CPU, NCCL on GPUs); returns the world size."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch
        import torch.distributed as dist

        use_nccl = torch.cuda.is_available() and device in ("auto", "cuda")
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return world


def _registry(args: argparse.Namespace):
    from .core.registry import ModelRegistry

    return ModelRegistry(args.workspace)


def cmd_models(args: argparse.Namespace) -> int:
    from .core.registry import RegistryError

    try:
        registry = _registry(args)
        if args.models_command == "list":
            print(f"{'':1s} {'version':28s} {'parent':28s} {'val dice':>8s} {'items':>5s}  note")
            for v in registry.versions():
                dice_value = v.metrics.get("queue_val", {}).get("dice")
                dice_text = f"{dice_value:8.4f}" if dice_value is not None else f"{'-':>8s}"
                print(
                    f"{'*' if v.active else ' '} {v.version_id:28s} {v.parent or '-':28s} "
                    f"{dice_text} {len(v.items):5d}  {v.note}"
                )
        elif args.models_command == "show":
            print(json.dumps(registry.get(args.version).__dict__, indent=2))
        elif args.models_command == "activate":
            print(f"active model: {registry.activate(args.version).version_id}")
        elif args.models_command == "export":
            print(f"exported to {registry.export(args.version, args.output)}")
        elif args.models_command == "import":
            from .core.checkpoint import CheckpointError, load_checkpoint
            from .core.models import resolve_model_path

            try:
                bundle = load_checkpoint(resolve_model_path(args.model))
            except (CheckpointError, OSError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            version = registry.register(
                bundle,
                parent=None,
                metrics=bundle.metrics,
                note=f"imported from {args.model}",
                activate=args.activate,
            )
            print(f"registered {version.version_id}{' (active)' if args.activate else ''}")
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .core.demo import run_demo

    return run_demo(Path(args.output), device=args.device)


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-unet",
        description="Stroke-lesion segmentation with a U-Net: predict, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto: bf16 where the hardware runs it natively (same Dice, see performance.md)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("synth", help="generate a synthetic stroke dataset (nnU-Net raw layout)")
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--train", type=int, default=64, help="training cases")
    p.add_argument("--val", type=int, default=10, help="validation cases (the fixed split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mode",
        choices=["hypo", "hyper"],
        default="hypo",
        help="hypointense (T1, chronic) or hyperintense (DWI/FLAIR look) lesions",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a lesion model (synthetic data or a real dataset)")
    p.add_argument("--output", "-o", required=True, help="run folder (checkpoints, history)")
    p.add_argument("--data", help="nnU-Net raw or BIDS-like dataset; default: synthetic")
    p.add_argument("--modality", default="T1w", help="BIDS suffix of the image (T1w, dwi, ...)")
    p.add_argument("--synthetic", type=int, default=64, help="synthetic training cases")
    p.add_argument("--val", type=int, default=10, help="synthetic validation cases")
    p.add_argument("--mode", choices=["hypo", "hyper"], default="hypo")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch", type=int, default=160)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--base-width", type=int, default=12)
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
    p.add_argument("--mine-every", type=int, default=250, help="steps between mining rounds")
    p.add_argument(
        "--clicks",
        action="store_true",
        help="train a click-guided model (two click channels, simulated users); with --init, "
        "start from that automatic model",
    )
    p.add_argument(
        "--context-slices",
        type=int,
        default=0,
        metavar="K",
        help="2.5D input: K neighbouring slices on each side as extra channels (default 0; "
        "with --init, the initial model's value)",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="ISLES 2022 metrics of predicted vs true masks")
    p.add_argument("--pred", required=True, help="mask file or folder")
    p.add_argument("--truth", required=True, help="mask file or folder (matched by case name)")
    p.add_argument("--json", help="write per-case and mean metrics here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "evaluate-clicks", help="NoC@85/90 and Dice@1/3/5 of both click engines (simulated user)"
    )
    p.add_argument("--data", required=True, help="nnU-Net raw or BIDS-like dataset")
    p.add_argument("--split", choices=["train", "val"], default="val")
    p.add_argument("--model", default="lesion-t1", help="automatic model (baseline engine)")
    p.add_argument("--click-model", default="lesion-t1-clicks", help="click-guided model")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--per-lesion", type=int, default=3, help="axial slices per lesion")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--json", help="write the full results here")
    p.set_defaults(func=cmd_evaluate_clicks)

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
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("queue", help="the edit queue: add, list, show, remove, export")
    queue_sub = p.add_subparsers(dest="queue_command", metavar="ACTION", required=True)

    def queue_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        q = queue_sub.add_parser(name, help=help_text)
        q.add_argument("--workspace", help="workspace folder (default: the user data dir)")
        q.set_defaults(func=cmd_queue)
        return q

    q = queue_parser("add", "queue corrected slices of an image")
    q.add_argument("--image", required=True)
    q.add_argument("--mask", required=True, help="0/1 mask in the image's voxel grid")
    q.add_argument("--prediction", help="the model's mask before correction (optional)")
    q.add_argument("--slices", help="comma-separated indices (default: slices with lesion)")
    q.add_argument("--axis", default="axial", help="axial|coronal|sagittal or 0|1|2")
    q.add_argument("--split", choices=["train", "val"], default="train")
    q.add_argument("--note", help="free text kept with each item")
    q = queue_parser("list", "current items (latest revision, not removed)")
    q.add_argument("--split", choices=["train", "val"])
    q.add_argument("--all", action="store_true", help="include removed and superseded items")
    for name, text in (
        ("show", "one item with its history"),
        ("remove", "soft delete"),
        ("restore", "undo a remove"),
    ):
        queue_parser(name, text).add_argument("id", type=int)
    q = queue_parser("split", "move an item to train or val")
    q.add_argument("id", type=int)
    q.add_argument("split", choices=["train", "val"])
    q = queue_parser("export", "write an nnU-Net raw dataset or NIfTI pairs")
    q.add_argument("--format", choices=["nnunet", "nifti"], required=True)
    q.add_argument("--output", "-o", required=True)
    queue_parser("check", "verify the database and every stored item")

    p = sub.add_parser("finetune", help="fine-tune on the queue's train items, gate on val")
    p.add_argument("--workspace", help="workspace folder (default: the user data dir)")
    p.add_argument("--base", help="version to start from (default: the active one)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--steps", type=int, default=150)
    group.add_argument("--epochs", type=float, help="passes over the train items instead")
    p.add_argument("--promote", choices=["auto", "never", "force"], default="auto")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--replay", help="dataset to mix replay slices from (nnU-Net raw layout)")
    p.add_argument("--replay-cases", type=int, default=4)
    p.add_argument(
        "--shards",
        type=int,
        help="split each batch into this many shards (default: the torchrun world "
        "size); use the same value to reproduce a distributed run in one process",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("models", help="the model registry: list, show, activate, export")
    models_sub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    for name, text in (
        ("list", "all versions (* = active)"),
        ("show", "one version"),
        ("activate", "make a version active (promote or roll back)"),
        ("export", "copy a version's checkpoint out"),
        ("import", "register a checkpoint or bundled model (e.g. lesion-t1-clicks) as a version"),
    ):
        m = models_sub.add_parser(name, help=text)
        m.add_argument("--workspace", help="workspace folder (default: the user data dir)")
        if name == "import":
            m.add_argument("model", help="checkpoint path or bundled model name")
            m.add_argument("--activate", action="store_true", help="make it the active version")
        elif name != "list":
            m.add_argument("version")
        if name == "export":
            m.add_argument("--output", "-o", required=True)
        m.set_defaults(func=cmd_models)

    p = sub.add_parser("demo", help="headless: segment the sample brain and write the results")
    p.add_argument("--output", "-o", default="out/demo")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
