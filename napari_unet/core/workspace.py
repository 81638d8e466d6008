"""A workspace folder: the edit queue, the model registry and autosaves live here.

The default is the user data directory (platformdirs); every CLI command takes
``--workspace DIR`` and the widget has a setting to override it.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import platformdirs

DB_NAME = "napari-unet.sqlite3"


class WorkspaceError(RuntimeError):
    """A workspace that cannot be used; the message says which folder and why."""


def default_workspace() -> Path:
    return Path(platformdirs.user_data_dir("napari-unet", appauthor=False)) / "workspace"


def resolve_workspace(path: str | Path | None) -> Path:
    return Path(path).expanduser() if path else default_workspace()


def connect(workspace: Path, readonly: bool = False) -> sqlite3.Connection:
    """Open the workspace database (WAL mode, foreign keys, a generous busy timeout)."""
    workspace = Path(workspace)
    if not readonly:
        try:
            workspace.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WorkspaceError(f"{workspace}: cannot create the workspace ({exc})") from exc
        if not os.access(workspace, os.W_OK):
            raise WorkspaceError(f"{workspace}: the workspace folder is not writable")
    db = workspace / DB_NAME
    if readonly and not db.exists():
        raise WorkspaceError(f"{workspace}: no napari-unet workspace here ({DB_NAME} missing)")
    uri = f"file:{db}?mode=ro" if readonly else f"file:{db}"
    connection = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute("PRAGMA busy_timeout = 30000")
    if not readonly:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
    return connection


@contextmanager
def transaction(connection: sqlite3.Connection):
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (writers serialize here)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
