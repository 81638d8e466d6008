"""Zoom-in for small clicked objects (RITM/FocalClick style), declared per click model.

When the object under a click is small, the click-guided network takes a second look at a
crop around it magnified ``factor`` times; its answer, averaged back over each native
pixel, is blended into the native answer inside the crop. A lacune of 20-30 pixels then
spans 40-60 pixels at the network's input, where its border is easier to place. The
setting lives in the model's sidecar (``click_zoom``) because it was tuned for that model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage


class ClickZoomError(ValueError):
    """A ``click_zoom`` setting that cannot be used; the message says which field."""


@dataclass(frozen=True)
class ClickZoom:
    """How the guided engine zooms in on a small object."""

    factor: int = 2  # magnification of the second look
    max_object: int = 24  # pixels: objects whose bounding box is longer are not zoomed
    from_click: int = 2  # the first click of a slice that zooms (1: every click)
    blend: float = 0.5  # weight of the zoomed answer against the native one

    def __post_init__(self) -> None:
        if int(self.factor) != self.factor or self.factor < 2:
            raise ClickZoomError(
                f"click_zoom factor must be a whole number >= 2, not {self.factor}"
            )
        if self.max_object < 1:
            raise ClickZoomError(f"click_zoom max_object must be >= 1, not {self.max_object}")
        if self.from_click < 1:
            raise ClickZoomError(f"click_zoom from_click must be >= 1, not {self.from_click}")
        if not 0.0 < self.blend <= 1.0:
            raise ClickZoomError(f"click_zoom blend must be in (0, 1], not {self.blend}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> ClickZoom:
        unknown = set(value) - {"factor", "max_object", "from_click", "blend"}
        if unknown:
            raise ClickZoomError(f"click_zoom has unknown fields {sorted(unknown)}")
        try:
            return cls(
                factor=int(value.get("factor", 2)),
                max_object=int(value.get("max_object", 24)),
                from_click=int(value.get("from_click", 2)),
                blend=float(value.get("blend", 0.5)),
            )
        except (TypeError, ValueError) as error:
            if isinstance(error, ClickZoomError):
                raise
            raise ClickZoomError(f"click_zoom has a non-numeric field ({error})") from error


def magnify(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (..., H, W) resampled ``factor`` times finer in its last two axes.

    Pixel edges stay aligned (``grid_mode``), so the fine pixels ``factor*i`` to
    ``factor*i + factor - 1`` of each row and column lie inside native pixel ``i``.
    """
    zooms = (1,) * (image.ndim - 2) + (factor, factor)
    return ndimage.zoom(image, zooms, order=1, grid_mode=True, mode="nearest")


def reduce(fine: np.ndarray, factor: int) -> np.ndarray:
    """The mean of each ``factor`` x ``factor`` block of a (H*factor, W*factor) map."""
    height, width = fine.shape[0] // factor, fine.shape[1] // factor
    return fine.reshape(height, factor, width, factor).mean(axis=(1, 3))


def magnified_point(row: int, col: int, origin: tuple[int, int], factor: int) -> tuple[int, int]:
    """Where native pixel (row, col) lands, relative to ``origin``, once magnified."""
    half = factor // 2
    return (row - origin[0]) * factor + half, (col - origin[1]) * factor + half
