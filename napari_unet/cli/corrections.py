"""``queue``, ``finetune`` and ``models``: corrections in, better models out."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .progress import ProgressBar


def _open_queue(args: argparse.Namespace):
    from ..core.edit_queue import EditQueue
    from ..core.workspace import resolve_workspace

    return EditQueue(resolve_workspace(args.workspace))


def cmd_queue(args: argparse.Namespace) -> int:
    from ..core.edit_queue import QueueError
    from ..core.io import GeometryMismatchError, ImageReadError
    from ..core.workspace import WorkspaceError

    try:
        return _queue_action(args)
    except (QueueError, ImageReadError, WorkspaceError, GeometryMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _queue_action(args: argparse.Namespace) -> int:
    from ..core import queue_io
    from ..core.edit_queue import QueueError
    from ..core.io import check_same_grid, read_image

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
    from ..core.edit_queue import QueueError
    from ..core.finetune import FinetuneConfig, finetune
    from ..core.registry import RegistryError

    replay = None
    if args.replay:
        from ..core.training.datasets import find_cases
        from ..core.training.slices import load_volumes

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
        from ..core.edit_queue import EditQueue

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
        paired = result.item_dice_difference()
        if paired is not None:
            print(
                f"  per-item Dice, candidate - base: {paired.difference:+.4f} (95 % bootstrap "
                f"interval {paired.ci_low:+.4f} to {paired.ci_high:+.4f} over {paired.cases} items)"
            )
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
    from ..core.registry import ModelRegistry

    return ModelRegistry(args.workspace)


def cmd_models(args: argparse.Namespace) -> int:
    from ..core.registry import RegistryError

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
            from ..core.checkpoint import CheckpointError, load_checkpoint
            from ..core.models import resolve_model_path

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


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands."""
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
