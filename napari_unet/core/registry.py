"""The model registry: every model version in a workspace, its lineage, and which is active.

Weights live in ``<workspace>/models/<version>.safetensors`` with their sidecar;
SQLite records parent, training items, hyperparameters and metrics. The first
time a workspace is used, the bundled default model is registered as its root
version and activated. When a later release bundles a new default, an existing
workspace registers it as another root but leaves the active version alone: the
user compares and promotes it. Versions are never deleted or overwritten: rolling
back is activating an earlier version.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import (
    CheckpointError,
    ModelBundle,
    _read_sidecar,
    load_checkpoint,
    save_checkpoint,
    sidecar_path,
)
from .models import DEFAULT_MODEL, resolve_model_path
from .schema import migrate
from .workspace import connect, resolve_workspace, transaction

ACTIVE_KEY = "active_model"


class RegistryError(ValueError):
    """An unknown version or a refused registry operation."""


@dataclass(frozen=True)
class ModelVersion:
    version_id: str
    parent: str | None
    weights_file: str
    created_at: str
    hyperparameters: dict
    items: list
    metrics: dict
    note: str
    active: bool


class ModelRegistry:
    def __init__(self, workspace: str | Path | None) -> None:
        self.workspace = resolve_workspace(workspace)
        self.connection = connect(self.workspace)
        migrate(self.connection, str(self.workspace))
        self.models_dir = self.workspace / "models"
        self.models_dir.mkdir(exist_ok=True)
        # the first opening activates the bundled default; after an upgrade that bundles a
        # new one, it joins as an inactive root and the user's active version stays
        self._register_bundled_default(activate=not self.versions())

    def close(self) -> None:
        self.connection.close()

    def _register_bundled_default(self, activate: bool) -> None:
        source = resolve_model_path(DEFAULT_MODEL)
        version_id = bundled_version_id(source)
        if version_id is None and not activate:
            return  # a broken installation must not lock users out of their workspace
        if version_id is not None and self._row(version_id) is not None:
            return
        bundle = load_checkpoint(source)  # a new workspace reports a broken installation
        note = f"bundled default ({DEFAULT_MODEL})"
        try:
            self.register(
                bundle,
                parent=None,
                note=note if activate else f"{note}, new in this release; not active",
                activate=activate,
                metrics=bundle.metrics,
            )
        except (RegistryError, CheckpointError, sqlite3.IntegrityError):
            if self._row(bundle.version_id) is None:  # not another process registering it
                raise

    # -- writing ------------------------------------------------------------------------
    def register(
        self,
        bundle: ModelBundle,
        parent: str | None,
        hyperparameters: dict | None = None,
        items: list | None = None,
        metrics: dict | None = None,
        note: str = "",
        activate: bool = False,
    ) -> ModelVersion:
        """Store a new version's weights, then its row (the row makes it visible)."""
        if self._row(bundle.version_id) is not None:
            raise RegistryError(f"version {bundle.version_id} is already registered")
        weights = self.models_dir / f"{bundle.version_id}.safetensors"
        save_checkpoint(bundle, weights)
        try:
            with transaction(self.connection):
                self.connection.execute(
                    "INSERT INTO models (version_id, parent, weights_file, created_at, "
                    "hyperparameters, items, metrics, note) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        bundle.version_id,
                        parent,
                        weights.name,
                        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        json.dumps(hyperparameters or {}),
                        json.dumps(items or []),
                        json.dumps(metrics or {}),
                        note,
                    ),
                )
                if activate:
                    self._set_active(bundle.version_id)
        except BaseException:
            weights.unlink(missing_ok=True)
            sidecar_path(weights).unlink(missing_ok=True)
            raise
        return self.get(bundle.version_id)

    def activate(self, version_id: str) -> ModelVersion:
        with transaction(self.connection):
            if self._row(version_id) is None:
                raise RegistryError(f"no model version {version_id!r} in {self.workspace}")
            self._set_active(version_id)
        return self.get(version_id)

    def _set_active(self, version_id: str) -> None:
        self.connection.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (ACTIVE_KEY, version_id),
        )

    def update_metrics(self, version_id: str, metrics: dict) -> None:
        with transaction(self.connection):
            self.connection.execute(
                "UPDATE models SET metrics = ? WHERE version_id = ?",
                (json.dumps(metrics), version_id),
            )

    # -- reading ------------------------------------------------------------------------
    def _row(self, version_id: str):
        return self.connection.execute(
            "SELECT * FROM models WHERE version_id = ?", (version_id,)
        ).fetchone()

    def active_id(self) -> str:
        row = self.connection.execute(
            "SELECT value FROM settings WHERE key = ?", (ACTIVE_KEY,)
        ).fetchone()
        if row is None:
            raise RegistryError(f"{self.workspace}: no active model version")
        return row[0]

    def get(self, version_id: str) -> ModelVersion:
        row = self._row(version_id)
        if row is None:
            raise RegistryError(f"no model version {version_id!r} in {self.workspace}")
        active = self._active_or_none()
        return ModelVersion(
            row["version_id"],
            row["parent"],
            row["weights_file"],
            row["created_at"],
            json.loads(row["hyperparameters"]),
            json.loads(row["items"]),
            json.loads(row["metrics"]),
            row["note"],
            row["version_id"] == active,
        )

    def _active_or_none(self) -> str | None:
        row = self.connection.execute(
            "SELECT value FROM settings WHERE key = ?", (ACTIVE_KEY,)
        ).fetchone()
        return None if row is None else row[0]

    def versions(self) -> list[ModelVersion]:
        rows = self.connection.execute("SELECT version_id FROM models ORDER BY id").fetchall()
        return [self.get(row[0]) for row in rows]

    def path(self, version_id: str) -> Path:
        return self.models_dir / self.get(version_id).weights_file

    def load(self, version_id: str | None = None) -> ModelBundle:
        return load_checkpoint(self.path(version_id or self.active_id()))

    def export(self, version_id: str, output: str | Path) -> Path:
        """Copy a version's weights and sidecar to ``output`` (a .safetensors path)."""
        output = Path(output)
        if output.suffix != ".safetensors":
            output = output / f"{version_id}.safetensors"
        if output.exists():
            raise RegistryError(f"{output}: exists; choose another path")
        output.parent.mkdir(parents=True, exist_ok=True)
        source = self.path(version_id)
        shutil.copyfile(source, output)
        shutil.copyfile(sidecar_path(source), sidecar_path(output))
        return output


def bundled_version_id(path: Path) -> str | None:
    """The version id in a bundled model's sidecar, without loading its weights."""
    try:
        return _read_sidecar(path)["version_id"]
    except CheckpointError:
        return None  # load_checkpoint then reports what is wrong


def active_model_path(workspace: str | Path | None) -> Path:
    """The active version's weights file (the CLI's ``--workspace`` for predict)."""
    registry = ModelRegistry(workspace)
    try:
        return registry.path(registry.active_id())
    finally:
        registry.close()
