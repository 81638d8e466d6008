"""Point-and-click with a click-guided U-Net (the DeepGrow/DeepEdit-style engine).

Each click re-runs the click-guided network on a patch around the click, with
all of that slice's clicks (inside the patch) encoded as Gaussian maps. The
clicked object is the part of the network's mask connected to a positive click.

How the result meets the existing mask, so that nothing painted by hand is lost
without the user asking:

* inside the patch, what this engine added on earlier clicks is replaced by the
  new object; everything else (automatic output, brush strokes) is kept;
* a negative click on a voxel that the engine did not add removes that voxel's
  connected region (the user said "not lesion" there), as the baseline does.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .click_maps import click_maps
from .clicks import Click, check_inside, component_at, patch_box
from .inference import Predictor

GUIDED_PATCH = 160  # network input around the latest click


class GuidedClickEngine:
    """Clicks answered by a click-guided model; one object per slice until cleared."""

    def __init__(
        self, predictor: Predictor, volume: np.ndarray, stats=None, patch: int = GUIDED_PATCH
    ) -> None:
        if not predictor.bundle.click_channels:
            raise ValueError(
                f"model {predictor.bundle.version_id} has no click channels; pick the "
                "click-guided model (lesion-t1-clicks) or use the baseline click engine"
            )
        self.predictor = predictor
        self.volume = volume
        self.stats = stats or predictor.fit_stats(volume, 3)
        self.patch = patch
        self.clicks: dict[tuple[int, int], list[Click]] = {}
        self.added: dict[tuple[int, int], np.ndarray] = {}  # what this engine put in

    def clear(self, axis: int, index: int) -> None:
        """Forget the clicks on one slice: the next click starts a new object."""
        self.clicks.pop((axis, index), None)
        self.added.pop((axis, index), None)

    def _image_slice(self, click: Click) -> np.ndarray:
        """The clicked slice as model input (with its neighbours for a 2.5D model)."""
        return self.predictor.volume_slab(self.volume, click.index, click.axis).astype(np.float32)

    def object_probability(self, click: Click) -> tuple[np.ndarray, tuple[slice, slice]]:
        """The network's probability on the patch around ``click``, given the slice's clicks."""
        key = (click.axis, click.index)
        image = self._image_slice(click)
        rows, cols = patch_box(click.row, click.col, image.shape[-2:], self.patch)
        patch_image = image[..., rows, cols]
        local = [(c.row - rows.start, c.col - cols.start, c.positive) for c in self.clicks[key]]
        maps = click_maps(patch_image.shape[-2:], local)
        prob = self.predictor.predict_slice(patch_image, self.stats, click_maps=maps)
        return prob, (rows, cols)

    def apply(self, click: Click, current: np.ndarray, threshold: float) -> np.ndarray:
        """The slice mask after ``click``, given the slice's ``current`` mask."""
        check_inside(click, self.volume.shape[-3:])
        key = (click.axis, click.index)
        self.clicks.setdefault(key, []).append(click)
        mask = np.asarray(current).astype(bool)
        added = self.added.setdefault(key, np.zeros_like(mask))
        prob, (rows, cols) = self.object_probability(click)
        found = prob >= threshold
        positives = [
            (c.row - rows.start, c.col - cols.start)
            for c in self.clicks[key]
            if c.positive and rows.start <= c.row < rows.stop and cols.start <= c.col < cols.stop
        ]
        labels, _ = ndimage.label(found, structure=np.ones((3, 3)))
        keep = {int(labels[r, c]) for r, c in positives} - {0}
        new_object = np.isin(labels, list(keep)) if keep else np.zeros_like(found)
        if click.positive and not new_object[click.row - rows.start, click.col - cols.start]:
            yy, xx = np.ogrid[: found.shape[0], : found.shape[1]]
            row, col = click.row - rows.start, click.col - cols.start
            new_object |= (yy - row) ** 2 + (xx - col) ** 2 <= 4  # visible feedback
        if not click.positive and not added[click.row, click.col]:
            mask &= ~component_at(mask & ~added, click.row, click.col)
        region = mask[rows, cols]
        region &= ~added[rows, cols]
        region |= new_object
        added[rows, cols] = new_object
        return mask.astype(np.asarray(current).dtype)
