"""Model checkpoints: safetensors weights plus a JSON sidecar, never unpickled code.

A checkpoint is two files side by side::

    lesion.safetensors   tensors only (or a torch file loaded with weights_only=True)
    lesion.json          config, normalization, version id, provenance, sha256 of the weights

The sidecar's sha256 detects truncated or tampered weights before they reach
the network.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .click_maps import SUPPORTED_CLICK_CHANNELS
from .click_zoom import ClickZoom, ClickZoomError
from .lesion_filter import LesionFilter, LesionFilterError
from .normalization import NormalizationSpec
from .unet import UNet, UNetConfig

FORMAT = "napari-unet-checkpoint"
FORMAT_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the fix."""


@dataclass
class ModelBundle:
    """A ready network with everything needed to use it the way it was trained."""

    model: UNet
    config: UNetConfig
    normalization: NormalizationSpec
    version_id: str
    threshold: float = 0.5
    min_lesion_voxels: int = 0  # post-processing: drop smaller 3D components
    min_lesion_extent_mm: float = 0.0  # post-processing: drop thinner 3D components (axial)
    grow_threshold: float | None = None  # post-processing: kept components grow to p >= this
    lesion_filter: LesionFilter | None = None  # post-processing: learned keep/drop per component
    click_channels: int = 0  # trailing input channels that encode clicks (click-guided models)
    click_zoom: ClickZoom | None = None  # click-guided models: zoom-in on small objects
    click_flip_average: bool = False  # click-guided models: average each patch with its mirror
    context_slices: int = 0  # 2.5D: neighbours on each side fed with every slice
    input_spacing_mm: float | None = None  # in-plane pixel spacing it was trained at (None: any)
    slice_spacing_mm: float | None = None  # 2.5D: distance of its training neighbours (None: any)
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def postprocess(
        self,
        mask: np.ndarray,
        spacing: tuple[float, ...],
        probability: np.ndarray | None = None,
    ) -> np.ndarray:
        """The model's declared clean-up of a whole-volume mask (display order).

        The growth step (``grow_threshold``) needs the ``probability`` the mask came from.
        """
        from .editing import model_postprocess

        return model_postprocess(
            mask,
            self.min_lesion_voxels,
            self.min_lesion_extent_mm,
            tuple(spacing),
            probability=probability,
            grow_threshold=self.grow_threshold,
            lesion_filter=self.lesion_filter,
        )

    def with_first_convolution(
        self,
        weight: torch.Tensor,
        click_channels: int,
        context_slices: int,
        provenance: dict[str, Any],
    ) -> ModelBundle:
        """A new version whose first convolution is ``weight`` (its input channels grown).

        Everything else (weights, normalization, threshold, post-processing) is copied; used
        to add click or neighbour-slice channels that start from this model's output.
        """
        config = UNetConfig.from_dict({**self.config.to_dict(), "in_channels": weight.shape[1]})
        state = {k: v.clone() for k, v in self.model.state_dict().items()}
        state["inc.0.weight"] = weight
        return self.with_network(config, state, provenance, click_channels, context_slices)

    def with_network(
        self,
        config: UNetConfig,
        state: dict[str, torch.Tensor],
        provenance: dict[str, Any],
        click_channels: int | None = None,
        context_slices: int | None = None,
    ) -> ModelBundle:
        """A new version with another network (``config`` and its ``state``).

        Every other setting (normalization, threshold, post-processing, click settings) is
        copied; provenance records this version as the origin.
        """
        model = UNet(config)
        model.load_state_dict(state)
        model.eval()
        return replace(
            self,
            model=model,
            config=config,
            version_id=new_version_id(),
            click_channels=self.click_channels if click_channels is None else click_channels,
            context_slices=self.context_slices if context_slices is None else context_slices,
            provenance={"expanded_from": self.version_id, **provenance},
            metrics={},
            path=None,
        )

    @property
    def slab_size(self) -> int:
        """Slices per image channel in one input: the slice and its neighbours."""
        return 2 * self.context_slices + 1

    @property
    def image_channels(self) -> int:
        """Image channels (layers, modalities) the model needs; clicks and neighbours aside."""
        return (self.config.in_channels - self.click_channels) // self.slab_size

    def sidecar(self, weights_sha256: str) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version_id": self.version_id,
            "config": self.config.to_dict(),
            "normalization": self.normalization.to_dict(),
            "threshold": self.threshold,
            "min_lesion_voxels": self.min_lesion_voxels,
            "click_channels": self.click_channels,
            "context_slices": self.context_slices,
            "click_zoom": None if self.click_zoom is None else self.click_zoom.to_dict(),
            "click_flip_average": self.click_flip_average,
            "input_spacing_mm": self.input_spacing_mm,
            "slice_spacing_mm": self.slice_spacing_mm,
            "min_lesion_extent_mm": self.min_lesion_extent_mm,
            "grow_threshold": self.grow_threshold,
            "lesion_filter": None if self.lesion_filter is None else self.lesion_filter.to_dict(),
            "provenance": self.provenance,
            "metrics": self.metrics,
            "weights_sha256": weights_sha256,
        }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _lesion_filter(value: Any, path: Path) -> LesionFilter | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CheckpointError(f"{sidecar_path(path)}: lesion_filter must be an object or null")
    try:
        return LesionFilter.from_dict(value)
    except LesionFilterError as error:
        raise CheckpointError(f"{sidecar_path(path)}: {error}") from error


def _spacing(value: Any, name: str, path: Path) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e3:
        raise CheckpointError(
            f"{sidecar_path(path)}: {name} must be a positive number of "
            f"millimetres or null, not {value!r}"
        )
    return float(value)


def _flag(value: Any, name: str, path: Path) -> bool:
    if not isinstance(value, bool):
        raise CheckpointError(f"{sidecar_path(path)}: {name} must be true or false, not {value!r}")
    return value


def _click_zoom(value: Any, path: Path) -> ClickZoom | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CheckpointError(f"{sidecar_path(path)}: click_zoom must be an object or null")
    try:
        return ClickZoom.from_dict(value)
    except ClickZoomError as error:
        raise CheckpointError(f"{sidecar_path(path)}: {error}") from error


def new_version_id() -> str:
    """A sortable, unique model version id such as ``20261125T101500-1a2b3c4d``."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(weights_path: Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes 0600 (and a writer may recreate the file): normal permissions
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(bundle: ModelBundle, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``path`` (.safetensors) and its sidecar atomically; refuses to overwrite by default."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: checkpoints are written as .safetensors files")
    side = sidecar_path(path)
    if not overwrite and (path.exists() or side.exists()):
        raise CheckpointError(
            f"{path}: a checkpoint already exists; pass overwrite=True to replace it"
        )
    state = {k: v.detach().cpu().contiguous() for k, v in bundle.model.state_dict().items()}
    _atomic_write_bytes(path, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    meta = bundle.sidecar(sha256_file(path))
    text = json.dumps(meta, indent=2, sort_keys=True)
    _atomic_write_bytes(side, lambda tmp: Path(tmp).write_text(text))
    bundle.path = path
    return path


def _read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(
            f"{path}: the sidecar {side.name} is missing. A checkpoint needs both the weights "
            "and the JSON file that describes them; copy them together."
        )
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{side}: the sidecar is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{side}: not a napari-unet sidecar (missing format={FORMAT!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{side}: written by a newer napari-unet (format {meta['format_version']}); upgrade"
        )
    for key in ("config", "normalization", "version_id"):
        if key not in meta:
            raise CheckpointError(f"{side}: the sidecar has no {key!r} entry")
    return meta


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes)")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types; all mean "refused"
        raise CheckpointError(
            f"{path}: refused to load. Only plain tensors are accepted; this file holds other "
            f"objects or is corrupt ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state_dict)")
    return state


def load_checkpoint(path: str | Path, verify_hash: bool = True) -> ModelBundle:
    """Load a checkpoint on the CPU in eval mode; every failure names the file and the cause."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise CheckpointError(f"{path}: expected one of {WEIGHT_SUFFIXES}")
    meta = _read_sidecar(path)
    if verify_hash and meta.get("weights_sha256"):
        actual = sha256_file(path)
        if actual != meta["weights_sha256"]:
            raise CheckpointError(
                f"{path}: the weights do not match the sha256 in {sidecar_path(path).name} "
                "(the file is truncated, corrupt or was modified). Re-copy the checkpoint."
            )
    try:
        config = UNetConfig.from_dict(meta["config"])
        normalization = NormalizationSpec.from_dict(meta["normalization"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{sidecar_path(path)}: invalid config ({exc})") from exc
    state = _read_tensors(path)
    model = UNet(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            detail.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} "
                f"vs config {tuple(expected[k].shape)})"
            )
        raise CheckpointError(
            f"{path}: the weights do not fit the config in the sidecar: " + "; ".join(detail)
        )
    context = int(meta.get("context_slices", 0))
    click_channels = int(meta.get("click_channels", 0))
    if click_channels not in (0, *SUPPORTED_CLICK_CHANNELS):
        raise CheckpointError(
            f"{sidecar_path(path)}: click_channels is {click_channels}; napari-unet reads 0 "
            "(automatic), 2 (positive and negative clicks) or 3 (plus the previous mask)"
        )
    if context < 0 or (config.in_channels - click_channels) % (2 * context + 1):
        raise CheckpointError(
            f"{sidecar_path(path)}: {config.in_channels} input channels cannot hold "
            f"{click_channels} click channel(s) plus slabs of {2 * context + 1} slices"
        )
    model.load_state_dict(state)
    model.eval()
    return ModelBundle(
        model=model,
        config=config,
        normalization=normalization,
        version_id=str(meta["version_id"]),
        threshold=float(meta.get("threshold", 0.5)),
        min_lesion_voxels=int(meta.get("min_lesion_voxels", 0)),
        click_channels=click_channels,
        click_zoom=_click_zoom(meta.get("click_zoom"), path),
        click_flip_average=_flag(meta.get("click_flip_average", False), "click_flip_average", path),
        context_slices=context,
        input_spacing_mm=_spacing(meta.get("input_spacing_mm"), "input_spacing_mm", path),
        slice_spacing_mm=_spacing(meta.get("slice_spacing_mm"), "slice_spacing_mm", path),
        min_lesion_extent_mm=float(meta.get("min_lesion_extent_mm", 0.0)),
        grow_threshold=_optional_float(meta.get("grow_threshold")),
        lesion_filter=_lesion_filter(meta.get("lesion_filter"), path),
        provenance=dict(meta.get("provenance", {})),
        metrics=dict(meta.get("metrics", {})),
        path=path,
    )
