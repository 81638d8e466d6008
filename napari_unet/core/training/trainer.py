"""Slice-based 2D training with Dice + cross-entropy, scheduled validation and resume.

The trainer is a generator of :class:`TrainEvent`; the CLI draws a progress
bar from it and the GUI runs it in a worker thread. It is seedable: the batch
at step ``s`` depends only on ``(seed, s)``, so a resumed run continues
exactly where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import ModelBundle, new_version_id, save_checkpoint
from ..click_eval import validate_clicks
from ..device import select_device
from ..editing import model_postprocess
from ..inference import Predictor
from ..metrics import dice, lesion_f1
from ..normalization import NormalizationSpec, identity_stats
from ..precision import autocast, resolve_training_precision
from ..progress import drain
from ..spacing import training_pixel_spacing, training_slice_spacing
from ..unet import UNet, UNetConfig
from .click_training import add_simulated_clicks
from .losses import lesion_probability, lesion_wise_dice_loss
from .slices import SliceBank, Volume

DEFAULT_MODEL = UNetConfig(
    in_channels=1, num_classes=1, base_width=12, depth=4, padding="same", norm="batch"
)


@dataclass
class TrainConfig:
    model: UNetConfig = field(default_factory=lambda: DEFAULT_MODEL)
    normalization: NormalizationSpec = field(default_factory=NormalizationSpec)
    patch: int = 160
    batch_size: int = 16
    steps: int = 2500
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    lesion_fraction: float = 0.6
    val_every: int = 500
    seed: int = 0
    device: str = "auto"
    threshold: float = 0.5
    min_lesion_voxels: int = 0
    min_lesion_extent_mm: float = 0.0
    precision: str = "auto"  # bf16 autocast where the hardware runs it natively
    hard_negative_fraction: float = 0.0  # share of patches centred on mined false positives
    mine_every: int = 250  # steps between hard-negative mining rounds
    mine_patches: int = 384  # random patches scored per mining round
    click_channels: int = 0  # >0: a click-guided model trained with simulated clicks
    context_slices: int = 0  # 2.5D: neighbours on each side given as extra channels
    no_click_fraction: float = 0.25  # click models: patches with no clicks (automatic mode)
    corrective_rounds: int = 3  # click models: most simulated corrective clicks per patch
    lesion_wise_weight: float = 0.0  # >0: add a per-lesion Dice term (training/losses.py)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["model"] = self.model.to_dict()
        data["normalization"] = self.normalization.to_dict()
        return data


@dataclass
class TrainEvent:
    step: int
    total: int
    loss: float
    val_dice: float | None = None
    val_f1: float | None = None
    best_dice: float | None = None
    message: str = ""


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy (BCE for one class) plus soft Dice of the lesion class over the batch."""
    if num_classes == 1:
        ce = F.binary_cross_entropy_with_logits(logits[:, 0], target)
        prob = torch.sigmoid(logits[:, 0])
    else:
        ce = F.cross_entropy(logits, target.long())
        prob = torch.softmax(logits, dim=1)[:, 1]
    intersection = (prob * target).sum()
    soft_dice = (2 * intersection + 1.0) / (prob.sum() + target.sum() + 1.0)
    return ce + (1 - soft_dice)


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-right flip, rotation/scale, intensity scale/shift and noise, on the whole batch."""
    batch = images.shape[0]

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator)

    flip = torch.rand(batch, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    masks = torch.where(flip[:, None, None], masks.flip(-1), masks)
    angle = uniform(-0.26, 0.26, batch)
    scale = uniform(0.85, 1.15, batch)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, -sin, torch.zeros(batch)], 1),
            torch.stack([sin, cos, torch.zeros(batch)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, images.shape, align_corners=False)
    background = images.amin(dim=(2, 3), keepdim=True)
    images = F.grid_sample(images - background, grid, align_corners=False) + background
    masks = (F.grid_sample(masks[:, None], grid, align_corners=False)[:, 0] > 0.5).float()
    images = images * uniform(0.85, 1.15, batch, 1, 1, 1) + uniform(-0.15, 0.15, batch, 1, 1, 1)
    noise = uniform(0.0, 0.1, batch, 1, 1, 1)
    images = images + noise * torch.randn(images.shape, generator=generator)
    return images, masks


def _lr_at(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 1e-5 + 0.5 * (config.lr - 1e-5) * (1 + math.cos(math.pi * progress))


def validate(
    bundle: ModelBundle,
    volumes: list[Volume],
    threshold: float,
    device: str = "auto",
    min_lesion_voxels: int = 0,
    min_lesion_extent_mm: float = 0.0,
) -> dict[str, float]:
    """3D Dice and lesion F1 over validation volumes, predicted slice by slice (axial)."""
    predictor = Predictor(bundle, device=device)
    dices, f1s = [], []
    identity = None
    for volume in volumes:
        image = volume.image.astype(np.float32)
        if identity is None:  # volumes are already normalized: bypass fitting
            identity = identity_stats(image.shape[0])
        prob = drain(predictor.iter_predict_volume(image, axis=0, stats=identity))
        pred = prob >= threshold
        pred = (
            model_postprocess(
                pred.astype(np.uint8), min_lesion_voxels, min_lesion_extent_mm, volume.spacing
            )
            > 0
        )
        dices.append(dice(pred, volume.mask))
        f1s.append(lesion_f1(pred, volume.mask))
    return {
        "dice": float(np.mean(dices)),
        "lesion_f1": float(np.mean(f1s)),
        "per_case_dice": [round(d, 4) for d in dices],
    }


def _training_memory_format(device: torch.device) -> torch.memory_format:
    """Channels-last where oneDNN or cuDNN use it well (CPU, CUDA); plain elsewhere (MPS)."""
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


@torch.no_grad()
def mine_hard_negatives(
    model: UNet,
    bank: SliceBank,
    rng: np.random.Generator,
    config: TrainConfig,
    device: torch.device,
    precision: str,
    per_patch: int = 8,
) -> int:
    """Score random patches with the current model and keep its false-positive pixels.

    Online hard-negative mining: the next patches are drawn around what the model
    currently gets wrong (skull base, ventricles, dark cortex), so false positives are
    trained away instead of being rare in random patches. Returns the pool size.
    """
    was_training = model.training
    model.eval()
    positions = [bank.random_position(rng) for _ in range(config.mine_patches)]
    pool: list[tuple[int, int, int]] = []
    half = config.patch // 2
    for start in range(0, len(positions), 32):
        chunk = positions[start : start + 32]
        images, masks = bank.crops_at(chunk, config.patch)
        if config.click_channels:  # mine the automatic mode: empty click maps
            empty = np.zeros((len(images), config.click_channels, *images.shape[2:]), np.float32)
            images = np.concatenate([images, empty], axis=1)
        with autocast(precision, device):
            logits = model(torch.from_numpy(images).to(device))
        probs = model.lesion_probability(logits.float()).cpu().numpy()
        for (index, cy, cx), prob, mask in zip(chunk, probs, masks, strict=True):
            ys, xs = np.nonzero((prob >= config.threshold) & (mask < 0.5))
            if len(ys):
                pick = rng.choice(len(ys), size=min(per_patch, len(ys)), replace=False)
                pool += [(index, cy - half + int(ys[k]), cx - half + int(xs[k])) for k in pick]
    bank.hard_negatives = pool
    model.train(was_training)
    return len(pool)


def train(
    train_volumes: list[Volume],
    val_volumes: list[Volume],
    config: TrainConfig,
    run_dir: str | Path,
    resume: bool = True,
    provenance: dict | None = None,
    init_from: ModelBundle | None = None,
) -> Generator[TrainEvent, None, Path]:
    """Train, validating every ``val_every`` steps; returns the best checkpoint's path.

    ``init_from`` starts from another model's weights (continued training, fine-tuning).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = select_device(config.device)
    torch.manual_seed(config.seed)
    model = UNet(config.model)
    if init_from is not None:
        if init_from.config != config.model:
            raise ValueError("init_from has a different network config than the training config")
        model.load_state_dict(init_from.model.state_dict())
    # channels-last: a training step 1.3x faster on the project's 2-core AVX2 CPU
    # (benchmarks/train_step.py); the checkpoint is copied into a contiguous model to save
    memory_format = _training_memory_format(device)
    model = model.to(device, memory_format=memory_format)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    bank = SliceBank(train_volumes, config.context_slices)
    pixel_spacing = training_pixel_spacing([volume.spacing for volume in train_volumes])
    slice_spacing = (
        training_slice_spacing([volume.spacing for volume in train_volumes])
        if config.context_slices
        else None
    )
    precision = resolve_training_precision(config.precision, device)
    state_path = run_dir / "last_state.pt"
    history_path = run_dir / "history.json"
    start, best_dice, history = 0, -1.0, {"train": [], "val": []}
    version_id = new_version_id()
    if resume and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, best_dice = int(state["step"]), float(state["best_dice"])
        history = json.loads(history_path.read_text()) if history_path.exists() else history
        version_id = (
            json.loads((run_dir / "best.json").read_text())["version_id"]
            if (run_dir / "best.json").exists()
            else version_id
        )
        if config.hard_negative_fraction > 0:  # the mined pool is not saved: mine again
            mine_hard_negatives(
                model,
                bank,
                np.random.default_rng([config.seed, start, 1]),
                config,
                device,
                resolve_training_precision(config.precision, device),
            )
        yield TrainEvent(start, config.steps, float("nan"), message=f"resumed at step {start}")
    best_path = run_dir / "best.safetensors"
    started = time.time()
    running = None
    for step in range(start, config.steps):
        model.train()
        rng = np.random.default_rng([config.seed, step])
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        if config.hard_negative_fraction > 0 and step % config.mine_every == 0 and step > 0:
            mine_hard_negatives(model, bank, rng, config, device, precision)
        images, masks = bank.sample(
            rng,
            config.batch_size,
            config.patch,
            config.lesion_fraction,
            config.hard_negative_fraction,
        )
        images, masks = augment_batch(torch.from_numpy(images), torch.from_numpy(masks), generator)
        if config.click_channels:
            images = add_simulated_clicks(
                model,
                images,
                masks,
                rng,
                device,
                precision,
                config.no_click_fraction,
                config.corrective_rounds,
                config.threshold,
                centre_channel=config.context_slices,
                click_channels=config.click_channels,
            )
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        with autocast(precision, device):
            logits = model(images.to(device).contiguous(memory_format=memory_format))
        loss = dice_ce_loss(logits.float(), masks.to(device), config.model.num_classes)
        if config.lesion_wise_weight > 0:
            prob = lesion_probability(logits.float(), config.model.num_classes)
            loss = loss + config.lesion_wise_weight * lesion_wise_dice_loss(prob, masks.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        running = value if running is None else 0.95 * running + 0.05 * value
        history["train"].append([step + 1, round(value, 5)])
        event = TrainEvent(step + 1, config.steps, running)
        if (step + 1) % config.val_every == 0 or step + 1 == config.steps:
            model.eval()
            bundle = ModelBundle(
                model,
                config.model,
                config.normalization,
                version_id,
                config.threshold,
                click_channels=config.click_channels,
                context_slices=config.context_slices,
            )
            scores = validate(
                bundle,
                val_volumes,
                config.threshold,
                config.device,
                config.min_lesion_voxels,
                config.min_lesion_extent_mm,
            )
            if config.click_channels:  # a click model is chosen by how it answers clicks
                scores.update(validate_clicks(bundle, val_volumes, config.device))
            history["val"].append(
                {"step": step + 1, **scores, "minutes": round((time.time() - started) / 60, 2)}
            )
            selection = scores.get("click_score", scores["dice"])
            if selection > best_dice:
                best_dice = selection
                cpu_model = UNet(config.model)
                cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
                best = ModelBundle(
                    cpu_model,
                    config.model,
                    config.normalization,
                    version_id,
                    config.threshold,
                    min_lesion_voxels=config.min_lesion_voxels,
                    min_lesion_extent_mm=config.min_lesion_extent_mm,
                    click_channels=config.click_channels,
                    context_slices=config.context_slices,
                    input_spacing_mm=pixel_spacing,
                    slice_spacing_mm=slice_spacing,
                    provenance={
                        **(provenance or {}),
                        "train_config": config.to_dict(),
                        "best_step": step + 1,
                    },
                    metrics={
                        "val_dice": scores["dice"],
                        "val_lesion_f1": scores["lesion_f1"],
                        **{k: v for k, v in scores.items() if k.startswith("click_")},
                    },
                )
                save_checkpoint(best, best_path, overwrite=True)
            _save_state(state_path, model, optimizer, step + 1, best_dice)
            history_path.write_text(json.dumps(history))
            event = TrainEvent(
                step + 1, config.steps, running, scores["dice"], scores["lesion_f1"], best_dice
            )
        yield event
    history_path.write_text(json.dumps(history))
    return best_path


def _save_state(path: Path, model, optimizer, step: int, best_dice: float) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "best_dice": best_dice,
        },
        tmp,
    )
    tmp.replace(path)
