"""The edit queue: every accepted correction, durable, with provenance.

An item is one corrected slice: the image (all channels), the corrected mask,
the model's prediction before correction, and where it came from. Arrays live
in ``items/<uid>.npz`` and metadata in SQLite. The array file is written and
fsynced *before* the row is committed, so an item is visible only when it is
complete; a crash leaves at most an orphan file, which :meth:`collect_garbage`
removes. Queuing the same slice again adds a new revision; nothing is
overwritten, and removal is a soft delete that can be undone.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import io
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .schema import migrate
from .workspace import WorkspaceError, connect, transaction

SPLITS = ("train", "val")


class QueueError(ValueError):
    """Bad input for the queue; the store is unchanged."""


@dataclass(frozen=True)
class QueueItem:
    id: int
    uid: str
    source_path: str
    source_sha256: str
    axis: int
    axis_name: str
    slice_index: int
    revision: int
    supersedes: int | None
    split: str
    model_version: str | None
    created_at: str
    user: str
    note: str
    affine: list
    spacing: list
    channels: int
    height: int
    width: int
    added_voxels: int
    removed_voxels: int
    lesion_voxels: int
    clicks: list | None
    intensity_stats: dict | None
    array_file: str
    array_sha256: str
    deleted_at: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> QueueItem:
        data = dict(row)
        data["affine"] = json.loads(data["affine"])
        data["spacing"] = json.loads(data["spacing"])
        data["clicks"] = json.loads(data["clicks"]) if data["clicks"] else None
        stats = data.get("intensity_stats")
        data["intensity_stats"] = json.loads(stats) if stats else None
        return cls(**data)

    def summary(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("affine",)}
        return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


def file_sha256(path: str | Path) -> str:
    """Content hash of a file, or of every file in a folder (a DICOM series)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class EditQueue:
    """The queue inside one workspace; safe to use from several processes at once."""

    def __init__(self, workspace: str | Path) -> None:
        self.workspace = Path(workspace)
        self.items_dir = self.workspace / "items"
        self.connection = connect(self.workspace)
        migrate(self.connection, str(self.workspace))
        self.items_dir.mkdir(exist_ok=True)

    def close(self) -> None:
        self.connection.close()

    # -- writing ------------------------------------------------------------------------
    def add(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        prediction: np.ndarray | None,
        *,
        source_path: str | Path,
        source_sha256: str,
        axis: int,
        axis_name: str,
        slice_index: int,
        affine: np.ndarray,
        spacing: tuple[float, ...],
        split: str = "train",
        model_version: str | None = None,
        note: str = "",
        user: str | None = None,
        clicks: list | None = None,
        intensity_stats: dict | None = None,
        neighbours: np.ndarray | None = None,
    ) -> QueueItem:
        """Store one corrected slice; returns the committed item.

        ``intensity_stats`` are the per-channel normalization statistics of the *whole*
        source volume, so fine-tuning normalizes the slice exactly as inference did.
        ``neighbours`` (C, 2m+1, H, W), the slice with m neighbours on each side, lets
        a 2.5D model be fine-tuned on the item with the input it sees at inference.
        """
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[None]
        if neighbours is not None:
            neighbours = np.asarray(neighbours)
            if (
                neighbours.ndim != 4
                or neighbours.shape[1] % 2 == 0
                or neighbours.shape[:1] + neighbours.shape[2:] != image.shape
            ):
                raise QueueError(
                    f"neighbours of shape {neighbours.shape} do not fit the image slice "
                    f"{image.shape}; expected (C, 2m+1, H, W) (source {source_path}, "
                    f"slice {slice_index})"
                )
        mask = np.asarray(mask)
        if split not in SPLITS:
            raise QueueError(f"split must be one of {SPLITS}, got {split!r}")
        if image.ndim != 3 or mask.shape != image.shape[1:]:
            raise QueueError(
                f"the mask's shape {mask.shape} does not match the image slice "
                f"{image.shape[1:]} (source {source_path}, slice {slice_index})"
            )
        values = np.unique(mask)
        if not np.isin(values, (0, 1)).all():
            raise QueueError(
                f"the mask must hold only 0 and 1; found values {values[:8].tolist()} "
                f"(source {source_path}, slice {slice_index})"
            )
        if prediction is None:
            prediction = np.zeros_like(mask, dtype=np.uint8)
        prediction = (np.asarray(prediction) > 0).astype(np.uint8)
        if prediction.shape != mask.shape:
            raise QueueError(f"the prediction's shape {prediction.shape} differs from the mask's")
        mask = mask.astype(np.uint8)
        uid = uuid.uuid4().hex
        array_file = f"{uid}.npz"
        sha = self._write_arrays(array_file, image, mask, prediction, neighbours)
        try:
            with transaction(self.connection):
                previous = self.connection.execute(
                    "SELECT id, revision FROM items WHERE source_sha256=? AND axis=? AND "
                    "slice_index=? ORDER BY revision DESC LIMIT 1",
                    (source_sha256, axis, slice_index),
                ).fetchone()
                revision = 1 if previous is None else previous["revision"] + 1
                cursor = self.connection.execute(
                    "INSERT INTO items (uid, source_path, source_sha256, axis, axis_name, "
                    "slice_index, revision, supersedes, split, model_version, created_at, user, "
                    "note, affine, spacing, channels, height, width, added_voxels, "
                    "removed_voxels, lesion_voxels, clicks, intensity_stats, array_file, "
                    "array_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        uid,
                        str(source_path),
                        source_sha256,
                        int(axis),
                        axis_name,
                        int(slice_index),
                        revision,
                        None if previous is None else previous["id"],
                        split,
                        model_version,
                        _now(),
                        user or _user(),
                        note,
                        json.dumps(np.asarray(affine, dtype=float).tolist()),
                        json.dumps([float(s) for s in spacing]),
                        image.shape[0],
                        mask.shape[0],
                        mask.shape[1],
                        int(((mask == 1) & (prediction == 0)).sum()),
                        int(((mask == 0) & (prediction == 1)).sum()),
                        int(mask.sum()),
                        json.dumps(clicks) if clicks else None,
                        json.dumps(intensity_stats) if intensity_stats else None,
                        array_file,
                        sha,
                    ),
                )
                item_id = cursor.lastrowid
                self._log(item_id, "add", f"revision {revision}")
        except BaseException:
            (self.items_dir / array_file).unlink(missing_ok=True)
            raise
        return self.get(item_id)

    def _write_arrays(self, name: str, image, mask, prediction, neighbours=None) -> str:
        buffer = io.BytesIO()
        extra = {} if neighbours is None else {"neighbours": neighbours}
        np.savez_compressed(buffer, image=image, mask=mask, prediction=prediction, **extra)
        payload = buffer.getvalue()
        final = self.items_dir / name
        tmp = self.items_dir / f".{name}.tmp"
        try:
            with open(tmp, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
            directory = os.open(self.items_dir, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise WorkspaceError(
                f"{self.workspace}: could not store the item ({exc.strerror or exc}); "
                "the queue is unchanged"
            ) from exc
        return hashlib.sha256(payload).hexdigest()

    def _log(self, item_id: int | None, action: str, detail: str = "") -> None:
        self.connection.execute(
            "INSERT INTO events (at, item_id, action, detail) VALUES (?,?,?,?)",
            (_now(), item_id, action, detail),
        )

    def remove(self, item_id: int) -> QueueItem:
        """Soft delete: the item disappears from lists and training until restored."""
        return self._set(item_id, "deleted_at = ?", (_now(),), "remove")

    def restore(self, item_id: int) -> QueueItem:
        return self._set(item_id, "deleted_at = NULL", (), "restore")

    def set_split(self, item_id: int, split: str) -> QueueItem:
        if split not in SPLITS:
            raise QueueError(f"split must be one of {SPLITS}, got {split!r}")
        return self._set(item_id, "split = ?", (split,), f"split {split}")

    def _set(self, item_id: int, assignment: str, params: tuple, action: str) -> QueueItem:
        with transaction(self.connection):
            if (
                self.connection.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone()
                is None
            ):
                raise QueueError(f"no queue item with id {item_id}")
            self.connection.execute(f"UPDATE items SET {assignment} WHERE id=?", (*params, item_id))
            self._log(item_id, action)
        return self.get(item_id)

    # -- reading ------------------------------------------------------------------------
    def get(self, item_id: int) -> QueueItem:
        row = self.connection.execute("SELECT * FROM items WHERE id=?", (item_id,)).fetchone()
        if row is None:
            raise QueueError(f"no queue item with id {item_id}")
        return QueueItem.from_row(row)

    def items(
        self,
        split: str | None = None,
        include_deleted: bool = False,
        include_superseded: bool = False,
    ) -> list[QueueItem]:
        """Current items: the latest revision of each slice, not removed."""
        query = "SELECT * FROM items i WHERE 1=1"
        params: list = []
        if not include_superseded:
            query += (
                " AND NOT EXISTS (SELECT 1 FROM items j WHERE j.source_sha256=i.source_sha256"
                " AND j.axis=i.axis AND j.slice_index=i.slice_index"
                " AND j.revision>i.revision)"
            )
        if not include_deleted:
            query += " AND i.deleted_at IS NULL"
        if split is not None:
            query += " AND i.split = ?"
            params.append(split)
        rows = self.connection.execute(query + " ORDER BY i.id", params).fetchall()
        return [QueueItem.from_row(row) for row in rows]

    def history(self, item_id: int) -> list[QueueItem]:
        item = self.get(item_id)
        rows = self.connection.execute(
            "SELECT * FROM items WHERE source_sha256=? AND axis=? AND slice_index=? "
            "ORDER BY revision",
            (item.source_sha256, item.axis, item.slice_index),
        ).fetchall()
        return [QueueItem.from_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        current = self.items()
        return {split: sum(1 for i in current if i.split == split) for split in SPLITS}

    def arrays(self, item: QueueItem, verify: bool = True) -> dict[str, np.ndarray]:
        path = self.items_dir / item.array_file
        payload = path.read_bytes()
        if verify and hashlib.sha256(payload).hexdigest() != item.array_sha256:
            raise WorkspaceError(f"{path}: the stored arrays do not match their checksum")
        with np.load(io.BytesIO(payload)) as data:
            keys = ("image", "mask", "prediction", "neighbours")
            return {key: data[key] for key in keys if key in data}

    # -- maintenance --------------------------------------------------------------------
    def check_integrity(self) -> list[str]:
        """SQLite's integrity check plus every item's array file and checksum."""
        problems = []
        result = self.connection.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            problems.append(f"sqlite: {result}")
        for item in self.items(include_deleted=True, include_superseded=True):
            path = self.items_dir / item.array_file
            if not path.exists():
                problems.append(f"item {item.id}: {path.name} is missing")
                continue
            if hashlib.sha256(path.read_bytes()).hexdigest() != item.array_sha256:
                problems.append(f"item {item.id}: {path.name} fails its checksum")
        return problems

    def collect_garbage(self, older_than_s: float = 3600.0) -> int:
        """Delete array files no row refers to (left by a crash), if older than a limit."""
        known = {row[0] for row in self.connection.execute("SELECT array_file FROM items")}
        removed = 0
        cutoff = time.time() - older_than_s
        for path in self.items_dir.iterdir():
            name = path.name.removeprefix(".").removesuffix(".tmp")
            if name not in known and path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
