"""Fine-tune from the queue, compare versions, promote or roll back, see what changed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from magicgui.widgets import ComboBox, Container, Image, Label, PushButton, Select, SpinBox
from napari.utils.notifications import show_info

from ..core.finetune import FinetuneConfig, FinetuneResult, finetune
from ..core.inference import Predictor
from ..core.registry import ModelRegistry, ModelVersion
from ..core.spacing import inplane_spacing
from .view import current_slice, voxel_spacing

CURVE_SHAPE = (110, 300)


def _plot(points: list[tuple[float, float]], height: int, width: int) -> np.ndarray:
    """An RGB line plot of (x, Dice) points; Dice 0..1 upwards, x scaled to the panel."""
    canvas = np.full((height, width, 3), 30, dtype=np.uint8)
    canvas[-1, :] = canvas[:, 0] = 160  # axes
    if not points:
        return canvas
    top = max(x for x, _ in points) or 1
    pixels = [(int(x / top * (width - 8)) + 4, int((1 - y) * (height - 8)) + 4) for x, y in points]
    for (x0, y0), (x1, y1) in zip(pixels, pixels[1:], strict=False):
        for t in np.linspace(0, 1, max(abs(x1 - x0), abs(y1 - y0), 1) + 1):
            canvas[int(y0 + t * (y1 - y0)), int(x0 + t * (x1 - x0))] = (120, 180, 255)
    for x, y in pixels:
        canvas[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3] = (255, 200, 60)
    return canvas


def learning_curve(versions: list[ModelVersion], shape=CURVE_SHAPE) -> np.ndarray:
    """Validation Dice per version against queued train items (left) and against the
    cumulative minutes of fine-tuning (right), side by side as one RGB image."""
    height, width = shape
    by_items, by_minutes, minutes = [], [], 0.0
    for version in versions:
        minutes += version.metrics.get("minutes", 0.0)
        dice = version.metrics.get("queue_val", {}).get("dice")
        if dice is not None:
            by_items.append((len(version.items), dice))
            by_minutes.append((minutes, dice))
    half = width // 2 - 2
    gap = np.full((height, width - 2 * half, 3), 0, dtype=np.uint8)
    return np.concatenate(
        [_plot(by_items, height, half), gap, _plot(by_minutes, height, half)], axis=1
    )


class ModelsPanel(Container):
    def __init__(self, owner) -> None:
        super().__init__(labels=True, label="models")
        self.owner = owner
        self.viewer = owner.viewer
        self.steps = SpinBox(label="steps", min=1, max=100_000, value=150)
        self.promote = ComboBox(label="promote", choices=["auto", "never", "force"], value="auto")
        self.finetune_button = PushButton(text="Fine-tune on the queue")
        self.comparison = Label(label="last run", value="")
        self.versions = Select(label="versions", choices=[])
        self.activate_button = PushButton(text="Activate selected (promote / roll back)")
        self.changes_button = PushButton(text="What changed here (active vs selected)")
        self.curve = Image(value=learning_curve([]))
        self.curve_label = Label(value="validation Dice vs queued train items | vs minutes")
        self.extend(
            [
                self.steps,
                self.promote,
                self.finetune_button,
                self.comparison,
                self.versions,
                self.activate_button,
                self.changes_button,
                self.curve_label,
                self.curve,
            ]
        )
        self._versions: list[ModelVersion] = []
        self.finetune_button.changed.connect(lambda _v=None: self.owner._guarded(self.start))
        self.activate_button.changed.connect(lambda _v=None: self.owner._guarded(self.activate))
        self.changes_button.changed.connect(lambda _v=None: self.owner._guarded(self.what_changed))

    @property
    def workspace(self) -> Path:
        return Path(self.owner.queue_panel.workspace.value)

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.workspace)

    def refresh(self) -> None:
        registry = self.registry()
        self._versions = registry.versions()
        labels = []
        for v in self._versions:
            dice = v.metrics.get("queue_val", {}).get("dice")
            score = f"val Dice {dice:.3f}" if dice is not None else "not validated"
            labels.append(f"{'● ' if v.active else '  '}{v.version_id} · {score} · {v.note}")
        with self.versions.changed.blocked():
            self.versions.choices = labels
        self.curve.value = learning_curve(self._versions)
        minutes = sum(v.metrics.get("minutes", 0.0) for v in self._versions)
        points = [
            f"{len(v.items)} items: {v.metrics['queue_val']['dice']:.2f}"
            for v in self._versions
            if "queue_val" in v.metrics and v.metrics["queue_val"]
        ]
        self.curve_label.value = (
            f"validation Dice vs queued train items (left) and vs minutes of fine-tuning "
            f"(right; {minutes:.1f} min in all)" + (f"\n{'; '.join(points)}" if points else "")
        )
        registry.close()

    def selected(self) -> ModelVersion:
        if not self.versions.value:
            raise ValueError("Select a model version first")
        return self._versions[self.versions.choices.index(self.versions.value[0])]

    def start(self) -> None:
        config = FinetuneConfig(
            steps=int(self.steps.value), promote=self.promote.value, device=self.owner.device.value
        )
        generator = finetune(self.workspace, config)

        def work():
            # leave one core to napari's event loop while training (it starved otherwise)
            threads = torch.get_num_threads()
            torch.set_num_threads(max(1, threads - 1))
            try:
                return (yield from _events(generator))
            finally:
                torch.set_num_threads(threads)

        def done(result: FinetuneResult) -> None:
            b, c = result.base_metrics, result.candidate_metrics
            if b:
                paired = result.item_dice_difference()
                spread = (
                    f" (per item {paired.difference:+.3f}, 95 % {paired.ci_low:+.3f} to "
                    f"{paired.ci_high:+.3f} over {paired.cases} items)"
                    if paired is not None
                    else ""
                )
                self.comparison.value = (
                    f"Dice {b['dice']:.3f} → {c['dice']:.3f}{spread}, lesion F1 "
                    f"{b['lesion_f1']:.3f} → {c['lesion_f1']:.3f}; "
                    f"{'promoted' if result.promoted else 'not promoted'}"
                )
            else:
                self.comparison.value = result.reason
            show_info(f"napari-unet: fine-tune finished: {result.reason}")
            self.refresh()

        self.owner._start(work, done, total=config.steps, description="fine-tuning")

    def activate(self) -> None:
        version = self.selected()
        registry = self.registry()
        registry.activate(version.version_id)
        registry.close()
        show_info(f"napari-unet: active model is now {version.version_id}")
        self.refresh()

    def what_changed(self) -> None:
        """Labels layer on the current slice: 1 = only the selected version, 2 = only active."""
        source = self.owner._source()
        axis, index = current_slice(self.viewer, source)
        registry = self.registry()
        active = registry.load()
        other = registry.load(self.selected().version_id)
        registry.close()
        predictors = [Predictor(b, device=self.owner.device.value) for b in (active, other)]
        volume = np.asarray(self.owner.input_data(source, predictors[0]))
        voxel_mm = voxel_spacing(source)
        pixel_mm = inplane_spacing(voxel_mm, axis)

        def work():
            masks = []
            for predictor in predictors:
                bundle = predictor.bundle
                stats = predictor.fit_stats(volume, 3)
                image = predictor.volume_slab(volume, index, axis, voxel_mm).astype(np.float32)
                prob = predictor.predict_slice(image, stats, spacing=pixel_mm)
                masks.append(prob >= bundle.threshold)
            return masks

        def done(masks) -> None:
            changes = np.zeros(source.data.shape, dtype=np.uint8)
            region = [slice(None)] * 3
            region[axis] = index
            changes[tuple(region)] = np.where(
                masks[1] & ~masks[0], 1, np.where(masks[0] & ~masks[1], 2, 0)
            )
            name = f"{source.name} what changed"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = changes
            else:
                self.viewer.add_labels(
                    changes, name=name, scale=source.scale, translate=source.translate, opacity=0.8
                )
            show_info(
                f"napari-unet: {int((changes == 1).sum())} voxels gained, "
                f"{int((changes == 2).sum())} lost by the selected version"
            )

        self.owner._start(work, done, total=0, description="comparing versions")


def _events(generator):
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value
        yield
