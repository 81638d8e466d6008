"""Overlap-tile inference for 2D slices, stacks of slices and volumes.

The core never touches Qt. Long work is a generator that yields
:class:`Progress` events; :func:`run_with_callback` drives it for callers that
prefer a callback (the CLI), and napari's ``thread_worker`` drives it in the GUI.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Generator

import numpy as np
import torch

from . import device_volume
from . import normalization as norm
from .checkpoint import ModelBundle
from .context import expand_per_channel, normalized_slabs, repeat_slab, volume_slab
from .cuda_graphs import GraphedForward
from .device import select_device
from .fusion import fold_batchnorm, fuse_conv_relu, fused_relu_supported
from .precision import resolve_precision
from .progress import Progress, drain, run_with_callback
from .spacing import (
    check_spacing,
    inplane_spacing,
    neighbour_step,
    resample_inplane,
    resample_probability,
    resampled_shape,
)
from .tiling import Stitcher, TilePlan, plan_tiles


def as_channels_first(image: np.ndarray, in_channels: int, spatial_dims: int) -> np.ndarray:
    """Return ``image`` with a leading channel axis, checking the channel count."""
    if image.ndim == spatial_dims:
        image = image[None]
    if image.ndim != spatial_dims + 1:
        raise ValueError(
            f"Expected a {spatial_dims}D image, optionally with a leading channel axis; "
            f"got shape {image.shape}"
        )
    if image.shape[0] != in_channels:
        raise ValueError(
            f"The model expects {in_channels} input channel(s) but the image has "
            f"{image.shape[0]} (shape {image.shape}). Load one layer per channel the model "
            "was trained with, in the same order."
        )
    return image


GPU_BATCH = 16  # slices per forward pass on a GPU (docs/performance.md, GPU table)


class Predictor:
    """Runs a loaded model on images of any size; build once, call many times."""

    def __init__(
        self,
        bundle: ModelBundle,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        max_tile: int = 512,
        skip_constant: bool = True,
        precision: str = "auto",
        channels_last: bool = True,
        fused: bool = True,
        cuda_graphs: bool | None = None,
        pin_memory: bool = False,
        device_resident: bool | None = None,
        resample: bool = True,
    ) -> None:
        self.bundle = bundle
        self.config = bundle.config
        # slices are resampled in-plane to the spacing the model was trained at, when the
        # caller gives the scan's spacing and the model declares one (core/spacing.py)
        self.target_spacing = bundle.input_spacing_mm if resample else None
        # a 2.5D model's neighbours are taken at the distance it learned them at
        self.slice_spacing = bundle.slice_spacing_mm if resample and bundle.context_slices else None
        self.device = select_device(device)
        on_gpu = self.device.type == "cuda"
        # CPU: 4 slices a batch: on a 2-core AVX2 CPU batches of 2-4 reach 76 % of the conv
        # ceiling and 8 only 61 % (its full-resolution maps spill out of cache); on an
        # AVX512-BF16 CPU 4 is within 2 % of the best. A GPU wants larger batches
        # (docs/performance.md has both measurements).
        default_batch = GPU_BATCH if on_gpu else 4
        self.batch_size = max(1, int(batch_size or default_batch))
        # GPU levers, each kept because it won on an H200 (docs/performance.md): CUDA-graph
        # replay (removes the launch cost of ~60 small kernels) and volumes that stay on
        # the card (core/device_volume.py). Pinned host memory did not win; it is opt-in.
        self.pin_memory = bool(pin_memory and on_gpu)
        self.device_resident = bool(on_gpu if device_resident is None else device_resident)
        self.max_tile = int(max_tile)
        # Eval-mode BatchNorm folded into its convolution: same outputs, less work.
        model = fold_batchnorm(bundle.model) if self.config.norm == "batch" else bundle.model
        # channels-last lets oneDNN pick its fastest convolution layout (1.75x on this
        # CPU); bf16 runs where the hardware has native bf16 (see docs/performance.md).
        # The weights are cast to bf16 once, here: the same arithmetic as bf16 autocast
        # (bit-identical outputs, tested) without re-casting every weight on every call.
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.precision = resolve_precision(precision, self.device)
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        if model is bundle.model:  # never change the caller's module in place
            model = copy.deepcopy(model)
        self.model = model.to(self.device, self.dtype, memory_format=self.memory_format).eval()
        # Each ReLU runs inside its convolution (a oneDNN post-op) where that op works for
        # this device and dtype: one memory pass fewer per layer (see core/fusion.py).
        self.fused = bool(
            fused and fused_relu_supported(self.device, self.dtype, self.memory_format)
        )
        if self.fused:
            fuse_conv_relu(self.model)
        use_graphs = on_gpu if cuda_graphs is None else cuda_graphs
        if use_graphs and not on_gpu:
            raise ValueError(
                f"cuda_graphs=True needs a CUDA device; this predictor runs on {self.device}"
            )
        self.cuda_graphs = bool(use_graphs)
        self._run_model = GraphedForward(self.model) if self.cuda_graphs else self.model
        self.model_lock = threading.Lock()  # one forward pass at a time per model
        self.skip_constant = skip_constant
        self._constant_cache: dict[tuple, np.ndarray] = {}

    # -- statistics -------------------------------------------------------------------
    def fit_stats(self, image: np.ndarray, spatial_dims: int) -> list[norm.IntensityStats]:
        """Per-channel normalization statistics for a whole image or volume."""
        image = as_channels_first(image, self.bundle.image_channels, spatial_dims)
        return [norm.fit(channel, self.bundle.normalization) for channel in image]

    def normalize(self, image: np.ndarray, stats: list[norm.IntensityStats]) -> np.ndarray:
        """Normalize a model input (image channels x neighbours, H, W); add empty click maps."""
        spec = self.bundle.normalization
        if len(image) == len(stats) * self.bundle.slab_size:
            stats = expand_per_channel(stats, self.bundle.context_slices)
        channels = [norm.apply(ch, st, spec) for ch, st in zip(image, stats, strict=True)]
        channels += [np.zeros_like(channels[0])] * self.bundle.click_channels
        return np.stack(channels)

    def slab(self, image: np.ndarray) -> np.ndarray:
        """A 2D image (C, H, W) as model input: a 2.5D model gets it as its own neighbours.

        An input that already holds the neighbours (C x (2k+1) channels) is returned as is.
        """
        if self.bundle.context_slices and len(image) == self.bundle.image_channels:
            return repeat_slab(image, self.bundle.context_slices)
        return image

    def volume_slab(
        self,
        volume: np.ndarray,
        index: int,
        axis: int = 0,
        spacing: tuple[float, float, float] | None = None,
    ) -> np.ndarray:
        """The input of slice ``index`` along ``axis`` of a (Z, Y, X) or (C, Z, Y, X) volume;
        with the volume's ``spacing``, a 2.5D model's neighbours at its own slice distance."""
        volume = as_channels_first(volume, self.bundle.image_channels, 3)
        moved = np.moveaxis(volume, axis + 1, 1)
        return volume_slab(
            moved, index, self.bundle.context_slices, self.neighbour_step(spacing, axis)
        )

    def neighbour_step(self, spacing: tuple[float, float, float] | None, axis: int) -> float:
        """How many slices along ``axis`` apart a 2.5D model's neighbours are taken."""
        if spacing is None:
            return 1.0
        return neighbour_step(self.slice_spacing, check_spacing(spacing, "voxel spacing")[axis])

    # -- forward ----------------------------------------------------------------------
    @property
    def graph_failure(self) -> str | None:
        """Why CUDA-graph capture failed (the predictor then runs eagerly), or None."""
        return getattr(self._run_model, "failure", None)

    def run_model(self, tensor: torch.Tensor) -> torch.Tensor:
        """The network's logits for a prepared tensor on this device (graph replay where
        enabled: the result is then the graph's buffer, valid until the next call)."""
        return self._run_model(tensor)

    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        host = torch.from_numpy(np.ascontiguousarray(batch))
        if self.pin_memory:
            host = host.pin_memory()
        tensor = host.to(self.device, non_blocking=self.pin_memory).to(self.dtype)
        tensor = tensor.contiguous(memory_format=self.memory_format)
        with self.model_lock:  # a replayed graph reuses its output buffer: read it under the lock
            logits = self._run_model(tensor)
            probs = self.model.lesion_probability(logits.float())
        return np.ascontiguousarray(probs.cpu().numpy())

    def _forward_skipping_constant(self, tiles: list[np.ndarray]) -> list[np.ndarray]:
        """Forward a batch, answering constant tiles (empty background) from a cache.

        Identical constant tiles give identical outputs, so each distinct one runs once:
        results are unchanged, and slices outside the head cost nothing.
        """
        outputs: list[np.ndarray | None] = [None] * len(tiles)
        pending = []
        for i, tile in enumerate(tiles):
            flat = tile.reshape(tile.shape[0], -1)
            if self.skip_constant and np.all(flat.min(axis=1) == flat.max(axis=1)):
                key = (tile.shape, tuple(float(v) for v in flat[:, 0]))
                if key not in self._constant_cache:
                    self._constant_cache[key] = self._forward(tile[None])[0]
                outputs[i] = self._constant_cache[key]
            else:
                pending.append(i)
        if pending:
            for i, prob in zip(
                pending, self._forward(np.stack([tiles[i] for i in pending])), strict=True
            ):
                outputs[i] = prob
        return outputs

    def iter_predict_stack(
        self, stack: np.ndarray, plan: TilePlan | None = None
    ) -> Generator[Progress, None, np.ndarray]:
        """Predict a normalized stack (N, C, H, W); yields progress, returns (N, H, W) probs."""
        count, _, height, width = stack.shape
        plan = plan or plan_tiles(height, width, self.config, self.max_tile)
        stitcher = Stitcher(count, plan)
        rows_in, cols_in = plan.tile_input_shape
        jobs = [(i, r, c) for i in range(count) for r, c in plan.tiles()]
        padded_cache: dict[int, np.ndarray] = {}
        finished_images = 0
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            tiles = []
            for index, r, c in chunk:
                if index not in padded_cache:
                    padded_cache.clear()
                    padded_cache[index] = plan.pad(stack[index])
                tiles.append(padded_cache[index][:, r : r + rows_in, c : c + cols_in])
            probs = self._forward_skipping_constant(tiles)
            for (index, r, c), prob in zip(chunk, probs, strict=True):
                stitcher.add(index, r, c, prob)
            done = (start + len(chunk)) // plan.count
            if done != finished_images:
                finished_images = done
                yield Progress(done, count)
        return stitcher.result()

    def prepare_slice(
        self,
        image: np.ndarray,
        stats: list[norm.IntensityStats] | None = None,
        click_maps: np.ndarray | None = None,
    ) -> np.ndarray:
        """The network's normalized (C, H, W) input for one 2D image (see :meth:`predict_slice`)."""
        if image.ndim == 3 and len(image) == self.bundle.image_channels * self.bundle.slab_size:
            centres = image[self.bundle.context_slices :: self.bundle.slab_size]
            stats = stats or self.fit_stats(centres, 2)
        else:
            image = as_channels_first(image, self.bundle.image_channels, 2)
            stats = stats or self.fit_stats(image, 2)
        normalized = self.normalize(self.slab(image), stats)
        if click_maps is not None:
            if not self.bundle.click_channels:
                raise ValueError(
                    f"model {self.bundle.version_id} is not click-guided; "
                    "use the click-guided model or the baseline click engine"
                )
            normalized[-self.bundle.click_channels :] = click_maps
        return normalized

    def predict_slice(
        self,
        image: np.ndarray,
        stats: list[norm.IntensityStats] | None = None,
        click_maps: np.ndarray | None = None,
        flip_average: bool = False,
        spacing: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Lesion probability (H, W) for one 2D image, (H, W) or (C, H, W).

        A 2.5D model takes the slice with its neighbours (see :meth:`volume_slab`); a
        lone 2D image serves as its own neighbours.
        ``click_maps`` (click-guided models only) fills the click channels; without it
        they are empty and the model answers as an automatic one.
        ``flip_average`` also runs the left-right mirror image (in the same batch) and
        averages the two answers.
        ``spacing`` is the image's (row, column) pixel spacing in mm: the network then
        sees the image at the spacing it was trained at, and the answer comes back on
        the image's own pixels.
        """
        shape = np.shape(image)[-2:]
        target = resampled_shape(shape, spacing, self.target_spacing) if spacing else None
        if target is not None:
            image = resample_inplane(np.asarray(image), target)
            if click_maps is not None:
                click_maps = resample_inplane(click_maps, target)
        prob = self.predict_prepared(self.prepare_slice(image, stats, click_maps), flip_average)
        return prob if target is None else resample_probability(prob, shape)

    def predict_prepared(self, normalized: np.ndarray, flip_average: bool = False) -> np.ndarray:
        """Lesion probability (H, W) for an input from :meth:`prepare_slice`."""
        if not flip_average:
            return drain(self.iter_predict_stack(normalized[None]))[0]
        return average_mirrored(drain(self.iter_predict_stack(with_mirrored(normalized[None]))))[0]

    def iter_predict_volume(
        self,
        volume: np.ndarray,
        axis: int = 0,
        stats: list[norm.IntensityStats] | None = None,
        indices: list[int] | None = None,
        chunk_slices: int | None = None,
        mirror: bool = False,
        spacing: tuple[float, float, float] | None = None,
    ) -> Generator[Progress, None, np.ndarray]:
        """Predict every slice (or ``indices``) of a (Z, Y, X) or (C, Z, Y, X) volume.

        Returns float32 probabilities shaped like the spatial volume; slices not in
        ``indices`` are zero. Memory stays bounded: slices go through in chunks.
        ``mirror`` is test-time augmentation: each slice also runs mirrored along its last
        axis (left-right on axial and coronal slices, as in training), in the same batch,
        and the two answers are averaged; it takes about twice as long.
        ``spacing`` is the volume's (Z, Y, X) voxel spacing in mm: slices are then
        resampled to the model's pixel spacing and the answer back to the volume's grid.
        """
        volume = as_channels_first(volume, self.bundle.image_channels, 3)
        stats = stats or self.fit_stats(volume, 3)
        moved = np.moveaxis(volume, axis + 1, 1)  # (C, S, H, W) view, no copy
        shape = moved.shape[2:]
        target = None
        if spacing is not None:
            target = resampled_shape(shape, inplane_spacing(spacing, axis), self.target_spacing)
        if target is not None:
            moved = resample_inplane(moved, target)
        step = self.neighbour_step(spacing, axis)
        result = yield from self._iter_predict_moved(
            moved, indices, stats, chunk_slices, mirror, step
        )
        if target is not None:  # back onto the scan's grid; slices not asked for stay 0
            ids = list(range(result.shape[0])) if indices is None else sorted(set(indices))
            on_grid = np.zeros((result.shape[0], *shape), dtype=np.float32)
            on_grid[ids] = resample_probability(result[ids], shape)
            result = on_grid
        return np.moveaxis(result, 0, axis)

    def _iter_predict_moved(
        self,
        moved: np.ndarray,
        indices: list[int] | None,
        stats: list[norm.IntensityStats],
        chunk_slices: int | None,
        mirror: bool,
        step: float = 1.0,
    ) -> Generator[Progress, None, np.ndarray]:
        """Probabilities (S, H, W) of slices ``indices`` of a (C, S, H, W) volume, a 2.5D
        model's neighbours ``step`` slices apart."""
        chunk_slices = chunk_slices or max(16, self.batch_size)
        slice_ids = list(range(moved.shape[1])) if indices is None else list(indices)
        plan = plan_tiles(moved.shape[2], moved.shape[3], self.config, self.max_tile)
        if self.device_resident and step == 1.0 and device_volume.supports(plan):
            return (
                yield from device_volume.iter_volume(
                    self, moved, slice_ids, stats, plan, chunk_slices, mirror
                )
            )
        result = np.zeros(moved.shape[1:], dtype=np.float32)
        total = len(slice_ids)
        done = 0
        yield Progress(0, total, "starting")
        passes = 2 if mirror else 1
        for start in range(0, total, chunk_slices):
            ids = slice_ids[start : start + chunk_slices]
            inputs = self._chunk_inputs(moved, ids, stats, step)
            gen = self.iter_predict_stack(with_mirrored(inputs) if mirror else inputs, plan)
            while True:
                try:
                    event = next(gen)
                except StopIteration as stop:
                    probs = stop.value
                    break
                yield Progress(done + event.done // passes, total)
            result[ids] = average_mirrored(probs) if mirror else probs
            done += len(ids)
        return result

    def _chunk_inputs(
        self,
        moved: np.ndarray,
        ids: list[int],
        stats: list[norm.IntensityStats],
        step: float = 1.0,
    ) -> np.ndarray:
        """Normalized inputs (N, channels, H, W) of slices ``ids`` of a (C, S, H, W) volume."""
        bundle = self.bundle
        return normalized_slabs(
            moved, ids, stats, bundle.normalization, bundle.context_slices, step,
            bundle.click_channels,
        )  # fmt: skip

    def predict_volume_slices(
        self,
        volume: np.ndarray,
        indices: list[int],
        stats=None,
        axis: int = 0,
        spacing: tuple[float, float, float] | None = None,
    ) -> np.ndarray:
        """Probabilities for the listed slices only (the others are zero)."""
        return drain(
            self.iter_predict_volume(volume, axis, stats, indices=indices, spacing=spacing)
        )

    def predict_volume(
        self,
        volume: np.ndarray,
        axis: int = 0,
        stats: list[norm.IntensityStats] | None = None,
        progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        mirror: bool = False,
        spacing: tuple[float, float, float] | None = None,
    ) -> np.ndarray:
        """Blocking version of :meth:`iter_predict_volume` with an optional callback."""
        return run_with_callback(
            self.iter_predict_volume(volume, axis, stats, mirror=mirror, spacing=spacing),
            progress,
            should_stop,
        )


def with_mirrored(stack: np.ndarray) -> np.ndarray:
    """A (N, C, H, W) stack followed by its mirror images along the last axis (2N images)."""
    return np.concatenate([stack, stack[..., ::-1]])


def average_mirrored(probs: np.ndarray) -> np.ndarray:
    """(N, H, W) from the 2N answers to :func:`with_mirrored`: each plain answer averaged
    with its mirror's answer, mirrored back."""
    count = len(probs) // 2
    return (probs[:count] + probs[count:, ..., ::-1]) / 2
