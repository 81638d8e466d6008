"""Errors raised by readers and writers; every message names the file."""

from __future__ import annotations

from pathlib import Path


class ImageReadError(ValueError):
    """A file that claims to be an image we read, but cannot be read."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ImageWriteError(OSError):
    """A file that cannot be written (exists, read-only, disk full, ...)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class GeometryMismatchError(ValueError):
    """Images or masks that do not share one voxel grid."""
