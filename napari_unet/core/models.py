"""The models that ship inside the package, and a cache so each loads only once."""

from __future__ import annotations

import threading
from pathlib import Path

from .checkpoint import CheckpointError, ModelBundle, load_checkpoint

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
BUNDLED = {
    "lesion-t1": MODELS_DIR / "lesion_t1.safetensors",
    "lesion-t1-clicks": MODELS_DIR / "lesion_t1_clicks.safetensors",
}
DEFAULT_MODEL = "lesion-t1"
CLICK_MODEL = "lesion-t1-clicks"  # click-guided: the automatic model plus two click channels

_cache: dict[Path, ModelBundle] = {}
_lock = threading.Lock()


def resolve_model_path(name_or_path: str | Path | None) -> Path:
    """A bundled model name (``lesion-t1``) or a checkpoint path; None means the default."""
    if name_or_path is None:
        name_or_path = DEFAULT_MODEL
    if str(name_or_path) in BUNDLED:
        path = BUNDLED[str(name_or_path)]
        if not path.exists():
            raise CheckpointError(
                f"{path}: the bundled model {name_or_path!r} is missing from this installation; "
                "reinstall napari-unet or pass --model PATH"
            )
        return path
    return Path(name_or_path)


def get_model(name_or_path: str | Path | None = None) -> ModelBundle:
    """Load a model once per process and return the same bundle afterwards."""
    path = resolve_model_path(name_or_path).resolve()
    with _lock:
        if path not in _cache:
            _cache[path] = load_checkpoint(path)
        return _cache[path]
