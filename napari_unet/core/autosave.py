"""Autosave of lesion masks not yet queued, restored when the same image opens again.

One file per source image (keyed by content hash) in ``<workspace>/autosave/``,
written atomically, so a crash at any moment leaves the previous autosave intact.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Autosave:
    mask: np.ndarray
    saved_at: str
    source_path: str


class Autosaver:
    def __init__(self, workspace: str | Path) -> None:
        self.folder = Path(workspace) / "autosave"

    def path(self, source_sha256: str) -> Path:
        return self.folder / f"{source_sha256}.npz"

    def save(self, source_sha256: str, mask: np.ndarray, source_path: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        meta = {
            "saved_at": _dt.datetime.now().isoformat(timespec="seconds"),
            "source_path": str(source_path),
        }
        np.savez_compressed(
            buffer,
            mask=np.asarray(mask, dtype=np.uint8),
            meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )
        target = self.path(source_sha256)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")  # writers never collide
        with open(tmp, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        return target

    def load(self, source_sha256: str) -> Autosave | None:
        path = self.path(source_sha256)
        if not path.exists():
            return None
        with np.load(path) as data:
            meta = json.loads(data["meta"].tobytes().decode())
            return Autosave(data["mask"], meta["saved_at"], meta["source_path"])

    def discard(self, source_sha256: str) -> None:
        self.path(source_sha256).unlink(missing_ok=True)
