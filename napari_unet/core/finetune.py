"""Fine-tune from the edit queue, gate on the validation items, register the result.

A fine-tune trains from a base version (the active one by default) on the
queue's *train* items, optionally mixing in replay slices from the original
training data, and evaluates base and candidate on the queue's *val* items
(Dice, lesion-wise F1, volume error in mL). ``auto`` activates the candidate
only if it is not worse; ``force`` always does; ``never`` keeps it inactive.
Nothing touches the registry until training has finished, so a cancelled run
leaves it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from . import normalization as norm
from .checkpoint import ModelBundle, new_version_id
from .context import volume_slab
from .device import select_device
from .edit_queue import EditQueue, QueueError, QueueItem
from .metrics import dice, lesion_f1
from .registry import ModelRegistry
from .spacing import inplane_spacing, neighbour_step, resample_inplane, resampled_shape
from .statistics import PairedDifference, paired_difference
from .training.click_training import add_simulated_clicks
from .training.slices import SliceBank, Volume
from .training.trainer import TrainEvent, augment_batch, dice_ce_loss
from .unet import UNet

PROMOTE = ("auto", "never", "force")


def warm_up_training() -> None:
    """Run one tiny optimizer step so PyTorch's lazy imports happen now.

    The first ``optimizer.step()`` imports torch.distributed.tensor and sympy (about a
    second of module execution). In a GUI worker thread that import holds the GIL and
    the import lock and stalls the event loop; the widget calls this once at start-up.
    """
    layer = torch.nn.Conv2d(1, 1, 3)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    layer(torch.zeros(1, 1, 4, 4)).sum().backward()
    optimizer.step()


@dataclass
class FinetuneConfig:
    steps: int = 150
    batch_size: int = 8
    patch: int = 128
    lr: float = 3e-4
    lesion_fraction: float = 0.7
    replay_fraction: float = 0.25
    seed: int = 0
    device: str = "auto"
    promote: str = "auto"
    shards: int = 1  # the batch is split into this many shards (one or more per process)


@dataclass
class FinetuneResult:
    candidate: str
    base: str
    promoted: bool
    reason: str
    base_metrics: dict = field(default_factory=dict)
    candidate_metrics: dict = field(default_factory=dict)
    seconds: float = 0.0

    def item_dice_difference(self) -> PairedDifference | None:
        """Paired bootstrap of per-item Dice (candidate - base); None under two items."""
        base = self.base_metrics.get("item_dice") or []
        candidate = self.candidate_metrics.get("item_dice") or []
        if len(base) < 2 or len(base) != len(candidate):
            return None
        return paired_difference("dice", base, candidate)


def item_volume(
    queue: EditQueue,
    item: QueueItem,
    spec: norm.NormalizationSpec,
    pixel_spacing: float | None = None,
    slice_spacing: float | None = None,
) -> Volume:
    """A queue item as a small training volume, normalized as inference saw it.

    The volume holds the slice's stored neighbours (or just the slice, for items
    queued without them); only the queued slice has a mask and is trained on. With the
    model's ``pixel_spacing``, the slice is resampled to it, and with a 2.5D model's
    ``slice_spacing`` the neighbours are re-taken at that distance, as inference does.
    """
    arrays = queue.arrays(item)
    image = arrays.get("neighbours", arrays["image"][:, None]).astype(np.float32)
    stored = item.intensity_stats
    channels = []
    for index, channel in enumerate(image):
        if stored and stored["spec"] == spec.to_dict():
            stats = norm.IntensityStats(**stored["channels"][index])
        else:  # queued for a model with another normalization: fall back to the slice
            stats = norm.fit(channel, spec)
        channels.append(norm.apply(channel, stats, spec))
    normalized = np.stack(channels).astype(np.float16)
    centre = normalized.shape[1] // 2
    mask = np.zeros(normalized.shape[1:], dtype=np.uint8)
    mask[centre] = arrays["mask"]
    spacing = tuple(float(s) for s in item.spacing)
    inplane = inplane_spacing(spacing, item.axis)
    target = resampled_shape(mask.shape[-2:], inplane, pixel_spacing)
    if target is not None:
        scale = [n / t for n, t in zip(mask.shape[-2:], target, strict=True)]
        normalized = resample_inplane(normalized, target).astype(np.float16)
        mask = (resample_inplane(mask, target) >= 0.5).astype(np.uint8)
        new_inplane = iter(s * k for s, k in zip(inplane, scale, strict=True))
        spacing = tuple(s if a == item.axis else next(new_inplane) for a, s in enumerate(spacing))
    step = neighbour_step(slice_spacing, spacing[item.axis])
    if step != 1.0 and centre:  # neighbours at the model's distance (the mask stays put)
        retaken = volume_slab(normalized, centre, centre, step)
        normalized = retaken.reshape(normalized.shape).astype(np.float16)
    return Volume(f"item{item.id}", normalized, mask, spacing, (centre,))


def evaluate_items(bundle: ModelBundle, volumes: list[Volume], device: str = "auto") -> dict:
    """Pooled Dice, mean lesion-wise F1 and mean absolute volume error (mL) over val items."""
    model = bundle.model.to(select_device(device)).eval()
    intersections = totals = 0
    f1s, errors, item_dice = [], [], []
    with torch.inference_mode():
        for volume in volumes:
            centre = (volume.train_slices or (0,))[0]
            slab = volume_slab(volume.image, centre, bundle.context_slices)
            image = torch.from_numpy(slab.astype(np.float32))[None]
            if bundle.click_channels:  # judged as an automatic model: empty click maps
                empty = torch.zeros(1, bundle.click_channels, *image.shape[-2:])
                image = torch.cat([image, empty], dim=1)
            height, width = image.shape[-2:]
            pad_h, pad_w = (-height) % 2**bundle.config.depth, (-width) % 2**bundle.config.depth
            padded = torch.nn.functional.pad(image, (0, pad_w, 0, pad_h), mode="reflect")
            prob = bundle.model.lesion_probability(
                model(padded.to(next(model.parameters()).device))
            )
            pred = prob[0, :height, :width].cpu().numpy() >= bundle.threshold
            truth = volume.mask[centre] > 0
            intersections += int((pred & truth).sum())
            totals += int(pred.sum() + truth.sum())
            f1s.append(lesion_f1(pred, truth))
            item_dice.append(dice(pred, truth))
            voxel_ml = float(np.prod(volume.spacing)) / 1000.0
            errors.append(abs(int(pred.sum()) - int(truth.sum())) * voxel_ml)
    pooled = 1.0 if totals == 0 else 2.0 * intersections / totals
    return {
        "dice": pooled,
        "lesion_f1": float(np.mean(f1s)) if f1s else float("nan"),
        "volume_error_ml": float(np.mean(errors)) if errors else float("nan"),
        "items": len(volumes),
        "item_dice": item_dice,  # per item, for paired comparisons of two versions
    }


def _world() -> tuple[int, int]:
    """(world size, rank) under torchrun/DDP, else (1, 0)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def _shard_batch(bank, replay_bank, config: FinetuneConfig, step: int, shard: int):
    """The patches of one shard of step ``step``: identical wherever the shard is computed."""
    rng = np.random.default_rng([config.seed, step, shard])
    size = config.batch_size // config.shards
    n_replay = int(round(size * config.replay_fraction)) if replay_bank else 0
    images, masks = bank.sample(rng, size - n_replay, config.patch, config.lesion_fraction)
    if n_replay:
        extra_images, extra_masks = replay_bank.sample(rng, n_replay, config.patch, 0.5)
        images = np.concatenate([images, extra_images])
        masks = np.concatenate([masks, extra_masks])
    return images, masks


def _not_worse(candidate: dict, base: dict) -> bool:
    return candidate["dice"] >= base["dice"] - 1e-9


def _run_key(base: str, items: list[QueueItem], config: FinetuneConfig) -> str:
    text = json.dumps([base, [(i.id, i.revision) for i in items], asdict(config)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def finetune(
    workspace: str | Path | None,
    config: FinetuneConfig | None = None,
    base: str | None = None,
    replay: list[Volume] | None = None,
) -> Generator[TrainEvent, None, FinetuneResult]:
    """Yields training progress; returns what was registered and whether it was promoted."""
    config = config or FinetuneConfig()
    if config.promote not in PROMOTE:
        raise ValueError(f"promote must be one of {PROMOTE}")
    started = time.time()
    registry = ModelRegistry(workspace)
    queue = EditQueue(registry.workspace)
    base_id = base or registry.active_id()
    base_bundle = registry.load(base_id)
    train_items, val_items = queue.items(split="train"), queue.items(split="val")
    if not train_items:
        raise QueueError(
            f"{registry.workspace}: no train items in the queue; queue corrections first"
        )
    spec = base_bundle.normalization
    spacings = (base_bundle.input_spacing_mm, base_bundle.slice_spacing_mm)
    train_volumes = [item_volume(queue, item, spec, *spacings) for item in train_items]
    val_volumes = [item_volume(queue, item, spec, *spacings) for item in val_items]
    device = select_device(config.device)
    if device.type == "cuda" and _world()[0] > 1:  # one GPU per process under torchrun
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.manual_seed(config.seed)
    model = UNet(base_bundle.config)
    model.load_state_dict(base_bundle.model.state_dict())
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    run_dir = registry.workspace / "finetune" / _run_key(base_id, train_items, config)
    run_dir.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.pt"
    start = 0
    if state_path.exists():  # an interrupted identical run: resume it
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        yield TrainEvent(start, config.steps, float("nan"), message=f"resumed at step {start}")
    context = base_bundle.context_slices
    bank = SliceBank(train_volumes, context)
    replay_bank = SliceBank(replay, context) if replay else None
    running = None
    world, rank = _world()
    if config.shards % world:
        raise ValueError(f"shards={config.shards} must be a multiple of the {world} processes")
    my_shards = range(rank, config.shards, world)
    trained = DistributedDataParallel(model) if world > 1 else model
    for step in range(start, config.steps):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for shard in my_shards:  # gradient of the mean shard loss, summed across processes
            images, masks = _shard_batch(bank, replay_bank, config, step, shard)
            generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 1009 + shard)
            x, y = augment_batch(torch.from_numpy(images), torch.from_numpy(masks), generator)
            if base_bundle.click_channels:  # click-guided: a simulated user clicks on the edits
                x = add_simulated_clicks(
                    model,
                    x,
                    y,
                    np.random.default_rng([config.seed, step, shard, 1]),
                    device,
                    "fp32",
                    centre_channel=base_bundle.context_slices,
                    click_channels=base_bundle.click_channels,
                )
            loss = (
                dice_ce_loss(trained(x.to(device)), y.to(device), base_bundle.config.num_classes)
                / config.shards
                * world
            )
            loss.backward()
            total += float(loss.detach())
        optimizer.step()
        running = total if running is None else 0.9 * running + 0.1 * total
        if (step + 1) % 25 == 0 and rank == 0:
            tmp = state_path.with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step + 1,
                },
                tmp,
            )
            tmp.replace(state_path)
        yield TrainEvent(step + 1, config.steps, running)
    if rank != 0:  # one process registers the result
        return FinetuneResult("", base_id, False, f"rank {rank}: training done")

    cpu_model = UNet(base_bundle.config)
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    candidate = replace(  # every model setting of the base, new weights and identity
        base_bundle,
        model=cpu_model.eval(),
        normalization=spec,
        version_id=new_version_id(),
        provenance={"parent": base_id, "finetune": asdict(config)},
        metrics={},
        path=None,
    )
    base_metrics = evaluate_items(base_bundle, val_volumes, "cpu") if val_volumes else {}
    cand_metrics = evaluate_items(candidate, val_volumes, "cpu") if val_volumes else {}
    candidate.metrics = {"queue_val": cand_metrics}
    if config.promote == "force":
        promoted, reason = True, "forced"
    elif config.promote == "never":
        promoted, reason = False, "promotion disabled (never)"
    elif not val_volumes:
        promoted, reason = False, "no validation items to check against: not promoted"
    elif _not_worse(cand_metrics, base_metrics):
        promoted, reason = (
            True,
            (f"validation Dice {cand_metrics['dice']:.4f} >= base {base_metrics['dice']:.4f}"),
        )
    else:
        promoted, reason = (
            False,
            (
                f"validation Dice {cand_metrics['dice']:.4f} < base "
                f"{base_metrics['dice']:.4f}: kept inactive"
            ),
        )
    registry.register(
        candidate,
        parent=base_id,
        hyperparameters=asdict(config),
        items=[[i.id, i.revision, i.uid] for i in train_items],
        metrics={
            "queue_val": cand_metrics,
            "base_queue_val": base_metrics,
            "train_items": len(train_items),
            "val_items": len(val_items),
            "minutes": round((time.time() - started) / 60, 3),
        },
        note=reason,
        activate=promoted,
    )
    state_path.unlink(missing_ok=True)
    registry.close()
    queue.close()
    return FinetuneResult(
        candidate.version_id,
        base_id,
        promoted,
        reason,
        base_metrics,
        cand_metrics,
        time.time() - started,
    )
