"""The workspace database schema and its migrations (``PRAGMA user_version``)."""

from __future__ import annotations

import sqlite3

from .workspace import WorkspaceError, transaction

MIGRATIONS: list[str] = [
    # 1: the edit queue
    """
    CREATE TABLE items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uid TEXT NOT NULL UNIQUE,
        source_path TEXT NOT NULL,
        source_sha256 TEXT NOT NULL,
        axis INTEGER NOT NULL,
        axis_name TEXT NOT NULL,
        slice_index INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        supersedes INTEGER REFERENCES items(id),
        split TEXT NOT NULL CHECK (split IN ('train', 'val')),
        model_version TEXT,
        created_at TEXT NOT NULL,
        user TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        affine TEXT NOT NULL,
        spacing TEXT NOT NULL,
        channels INTEGER NOT NULL,
        height INTEGER NOT NULL,
        width INTEGER NOT NULL,
        added_voxels INTEGER NOT NULL,
        removed_voxels INTEGER NOT NULL,
        lesion_voxels INTEGER NOT NULL,
        clicks TEXT,
        intensity_stats TEXT,
        array_file TEXT NOT NULL,
        array_sha256 TEXT NOT NULL,
        deleted_at TEXT
    );
    CREATE INDEX items_key ON items (source_sha256, axis, slice_index, revision);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        item_id INTEGER REFERENCES items(id),
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    """,
    # 2: the model registry
    """
    CREATE TABLE models (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        version_id TEXT NOT NULL UNIQUE,
        parent TEXT,
        weights_file TEXT NOT NULL,
        created_at TEXT NOT NULL,
        hyperparameters TEXT NOT NULL DEFAULT '{}',
        items TEXT NOT NULL DEFAULT '[]',
        metrics TEXT NOT NULL DEFAULT '{}',
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: sqlite3.Connection, location: str) -> int:
    """Bring the schema up to date; refuse databases from a newer napari-unet."""
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise WorkspaceError(
            f"{location}: the workspace has schema version {version}, but this napari-unet "
            f"knows only up to {SCHEMA_VERSION}. Upgrade napari-unet; nothing was changed."
        )
    if version == SCHEMA_VERSION:
        return version
    with transaction(connection):
        current = connection.execute("PRAGMA user_version").fetchone()[0]
        for number in range(current, SCHEMA_VERSION):
            for statement in MIGRATIONS[number].split(";"):
                if statement.strip():
                    connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION
