"""Point-and-click with a click-guided U-Net (the DeepGrow/DeepEdit-style engine).

Each click re-runs the click-guided network on a patch around the click, with
all of that slice's clicks (inside the patch) encoded as Gaussian maps, and, for
a model with a previous-mask channel, the object this engine drew before the
click. The network's object is the part of its mask connected to a positive click.

How a click changes the mask:

* when the network's object obeys every click on the slice (each positive click
  inside, each negative click outside), it replaces what this engine drew before;
* otherwise the click edits only near itself, and only in the direction it asks,
  so a network that overreacts cannot undo earlier corrections: a positive click
  adds the network's object under it within twice its distance to the mask (where
  the network sees nothing, the threshold is lowered locally as in the baseline
  engine); a negative click removes the region under it that the network now
  rejects (where the network still accepts it, the threshold is raised locally:
  the nearby part of the object no surer than the clicked pixel goes). Either way
  a click decides its own pixel, and never the pixels nearer to a click of the
  other kind;
* a negative click on voxels this engine did not draw (automatic output, brush
  strokes) removes their connected region: the user said "not lesion" there.

Nothing the user painted is removed without a negative click on it.

A model whose sidecar declares ``click_zoom`` (see :mod:`.click_zoom`) also takes a
magnified second look at a small object before these rules apply.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .click_maps import click_maps, clicked_object
from .click_refine import ClickRefiner, RefineSettings
from .click_zoom import ClickZoom, magnified_point, magnify, reduce
from .clicks import Click, check_inside, component_at, grow_from_click, patch_box
from .inference import Predictor

GUIDED_PATCH = 160  # network input around the latest click
WINDOW_SCALE = 2.0  # a local positive edit reaches this many times the click's gap to the mask
# Radius of the disc every click decides by itself: the clicked pixel only. On 12 training
# brains (66 simulated tasks, scripts/tune_click_rule.py) NoC@90 was 4.38 at radius 0
# against 4.62 at 1 and 5.30 at 2: on a 15-30 pixel lacune a wider disc flips true
# pixels next to the one the user meant, and the next click has to undo that.
CLICK_DISC = 0.0
# Averaging each patch's answer with its left-right mirror is a model setting
# (``click_flip_average`` in the sidecar; ``flip_average="model"``). In session 5 it helped
# on training brains (NoC@90 4.02 -> 3.70) but not on held-out ones (5.00 -> 5.09); see
# docs/model-card-clicks.md (session 28) for the model that declares it.
# local_replace=True limits a replacement by an obeying network answer to the pixels nearer
# to the new click than to any click of the other kind. On 12 training brains (session 12,
# scripts/click_rule_check.py) NoC@90 rose from 3.76 to 4.47, so it is off.
LOCAL_REPLACE = False
# A negative click on a pixel the network still accepts (negative_raise=True) raises the
# threshold locally, as a positive click lowers it: the region it removes is the part of
# the engine's object, connected to the click, where the network is no surer than
# NEGATIVE_MARGIN times its probability at the click, within NEGATIVE_WINDOW pixels.
# It targets the thin rim of over-segmentation around large lesions, where each negative
# click otherwise removes one pixel. Chosen on 48 training brains (NoC@90 3.749 -> 3.646),
# then confirmed on 80 fresh brains fixed in advance (seeds 901818-901897, 384 tasks):
# NoC@90 3.802 -> 3.677, paired -0.125 (-0.268 to -0.021), NoC@85 2.216 -> 2.195, Dice@1
# unchanged (docs/negative_rule_fresh1818.json).
NEGATIVE_RAISE = True
NEGATIVE_MARGIN = 1.1
NEGATIVE_WINDOW = 8.0
# When the network's answer disobeys a click, refine it (f-BRS, see :mod:`.click_refine`)
# before the local rules above apply. Off until measured (docs/model-card-clicks.md).
REFINE = False


class GuidedClickEngine:
    """Clicks answered by a click-guided model; one object per slice until cleared."""

    def __init__(
        self,
        predictor: Predictor,
        volume: np.ndarray,
        stats=None,
        patch: int = GUIDED_PATCH,
        flip_average: bool | str = "model",
        local_replace: bool = LOCAL_REPLACE,
        zoom: ClickZoom | None | str = "model",
        negative_raise: bool = NEGATIVE_RAISE,
        negative_margin: float = NEGATIVE_MARGIN,
        negative_window: float = NEGATIVE_WINDOW,
        refine: RefineSettings | None | str = "default",
        spacing: tuple[float, float, float] | None = None,
    ) -> None:
        if not predictor.bundle.click_channels:
            raise ValueError(
                f"model {predictor.bundle.version_id} has no click channels; pick the "
                "click-guided model (lesion-t1-clicks) or use the baseline click engine"
            )
        self.predictor = predictor
        self.volume = volume
        self.spacing = spacing  # (Z, Y, X) mm: a 2.5D model's neighbours at its own distance
        self.stats = stats or predictor.fit_stats(volume, 3)
        self.patch = patch
        # "model": the mirror averaging the model's sidecar declares
        self.flip_average = (
            predictor.bundle.click_flip_average if flip_average == "model" else bool(flip_average)
        )
        self.local_replace = local_replace
        self.negative_raise = negative_raise
        self.negative_margin = negative_margin
        self.negative_window = negative_window
        # "model": the zoom-in the model's sidecar declares (None there: no zoom)
        self.zoom = predictor.bundle.click_zoom if zoom == "model" else zoom
        if refine == "default":
            refine = RefineSettings() if REFINE else None
        # built once per engine (one volume), never per click
        self.refiner = None if refine is None else ClickRefiner(predictor.bundle, refine)
        self.clicks: dict[tuple[int, int], list[Click]] = {}
        self.added: dict[tuple[int, int], np.ndarray] = {}  # what this engine put in

    def clear(self, axis: int, index: int) -> None:
        """Forget the clicks on one slice: the next click starts a new object."""
        self.clicks.pop((axis, index), None)
        self.added.pop((axis, index), None)

    def _image_slice(self, click: Click) -> np.ndarray:
        """The clicked slice as model input (with its neighbours for a 2.5D model)."""
        slab = self.predictor.volume_slab(self.volume, click.index, click.axis, self.spacing)
        return slab.astype(np.float32)

    def patch_input(self, click: Click) -> tuple[np.ndarray, tuple[slice, slice]]:
        """The network's input (C, H, W) on the patch around ``click``, and the patch."""
        key = (click.axis, click.index)
        image = self._image_slice(click)
        rows, cols = patch_box(click.row, click.col, image.shape[-2:], self.patch)
        patch_image = image[..., rows, cols]
        local = [(c.row - rows.start, c.col - cols.start, c.positive) for c in self.clicks[key]]
        previous = self.added[key][rows, cols] if key in self.added else None
        maps = click_maps(
            patch_image.shape[-2:], local, self.predictor.bundle.click_channels, previous
        )
        return self.predictor.prepare_slice(patch_image, self.stats, click_maps=maps), (rows, cols)

    def object_probability(self, click: Click) -> tuple[np.ndarray, tuple[slice, slice]]:
        """The network's probability on the patch around ``click``, given the slice's clicks."""
        normalized, box = self.patch_input(click)
        return self.predictor.predict_prepared(normalized, self.flip_average), box

    def zoom_box(
        self, click: Click, prob: np.ndarray, box: tuple[slice, slice], threshold: float
    ) -> tuple[slice, slice] | None:
        """The crop of the patch ``box`` to magnify, or None when the object is not small."""
        key = (click.axis, click.index)
        if self.zoom is None or len(self.clicks[key]) < self.zoom.from_click:
            return None
        clicks = _in_patch(self.clicks[key], *box)
        extent = clicked_object(prob >= threshold, clicks)
        if key in self.added:
            extent |= self.added[key][box]
        for r, c, positive in clicks:
            extent[r, c] |= positive
        if not extent.any():
            return None
        found_rows, found_cols = np.nonzero(extent)
        if max(np.ptp(found_rows), np.ptp(found_cols)) + 1 > self.zoom.max_object:
            return None
        centre = (int(found_rows.mean().round()), int(found_cols.mean().round()))
        return patch_box(*centre, prob.shape, self.patch // self.zoom.factor)

    def zoomed_probability(
        self, click: Click, prob: np.ndarray, box: tuple[slice, slice], crop: tuple[slice, slice]
    ) -> np.ndarray:
        """``prob`` blended, in place inside ``crop``, with a magnified look at it."""
        return self._blend(prob, crop, self.zoomed_look(click, box, crop))

    def _blend(self, prob: np.ndarray, crop: tuple[slice, slice], look: np.ndarray) -> np.ndarray:
        native = prob[crop]
        native *= 1.0 - self.zoom.blend
        native += self.zoom.blend * look
        return prob

    def zoomed_look(
        self, click: Click, box: tuple[slice, slice], crop: tuple[slice, slice]
    ) -> np.ndarray:
        """The magnified look at ``crop`` of the patch ``box``, averaged back to native pixels."""
        factor, key = self.zoom.factor, (click.axis, click.index)
        image = self._image_slice(click)[(..., *box)][(..., *crop)]
        origin = (crop[0].start, crop[1].start)
        clicks = _in_patch(self.clicks[key], *box)
        local = [(*magnified_point(r, c, origin, factor), p) for r, c, p in clicks]
        previous = self.added[key][box][crop] if key in self.added else None
        if previous is not None:
            previous = previous.repeat(factor, axis=0).repeat(factor, axis=1)
        maps = click_maps(
            (image.shape[-2] * factor, image.shape[-1] * factor),
            local,
            self.predictor.bundle.click_channels,
            previous,
        )
        fine = self.predictor.predict_slice(magnify(image, factor), self.stats, click_maps=maps)
        return reduce(fine, factor)

    def _consistent_object(
        self, found: np.ndarray, key: tuple[int, int], rows: slice, cols: slice
    ) -> np.ndarray | None:
        """The network's object (parts connected to positive clicks) if it obeys every click."""
        clicks = _in_patch(self.clicks[key], rows, cols)
        candidate = clicked_object(found, clicks)
        if not candidate.any():
            return None
        if all(candidate[r, c] == positive for r, c, positive in clicks):
            return candidate
        return None

    def _refined(
        self,
        click: Click,
        native: np.ndarray,
        found: np.ndarray,
        drawn: np.ndarray,
        threshold: float,
        crop: tuple[slice, slice] | None,
        look: np.ndarray | None,
    ) -> np.ndarray | None:
        """The patch's answer after click-consistent refinement (None: nothing to refine)."""
        normalized, box = self.patch_input(click)
        clicks = _in_patch(self.clicks[(click.axis, click.index)], *box)
        blend = None
        if look is not None:
            scale, offset = np.ones_like(native), np.zeros_like(native)
            scale[crop] = 1.0 - self.zoom.blend
            offset[crop] = self.zoom.blend * look
            blend = (scale, offset)
        focus = clicked_object(found, clicks) | drawn
        refined = self.refiner.refine(normalized, native, clicks, threshold, focus, blend)
        if refined is None:
            return None
        return refined if look is None else self._blend(refined, crop, look)

    def apply(self, click: Click, current: np.ndarray, threshold: float) -> np.ndarray:
        """The slice mask after ``click``, given the slice's ``current`` mask."""
        check_inside(click, self.volume.shape[-3:])
        key = (click.axis, click.index)
        self.clicks.setdefault(key, []).append(click)
        mask = np.asarray(current).astype(bool)
        added = self.added.setdefault(key, np.zeros_like(mask))
        native, (rows, cols) = self.object_probability(click)
        crop = self.zoom_box(click, native, (rows, cols), threshold)
        look = None if crop is None else self.zoomed_look(click, (rows, cols), crop)
        prob = native if look is None else self._blend(native.copy(), crop, look)
        found = prob >= threshold
        row, col = click.row - rows.start, click.col - cols.start
        region, region_added = mask[rows, cols], added[rows, cols]  # views: edited in place
        # a click speaks for the pixels nearer to it than to any click of the other kind
        others = [
            (r, c) for r, c, p in _in_patch(self.clicks[key], rows, cols) if p != click.positive
        ]
        own = _nearer_than(region.shape, (row, col), others)
        candidate = self._consistent_object(found, key, rows, cols)
        if candidate is None and self.refiner is not None:  # make the network obey the clicks
            refined = self._refined(click, native, found, added[rows, cols], threshold, crop, look)
            if refined is not None:
                prob = refined
                found = prob >= threshold
                candidate = self._consistent_object(found, key, rows, cols)
        if candidate is not None:
            # the engine's last object gives way to the new one (only on this click's side
            # of the other kind's clicks, with local_replace)
            side = own if self.local_replace else True
            np.copyto(region, (region & ~region_added) | candidate, where=side)
            np.copyto(region_added, candidate, where=side)
        elif click.positive:
            grown = (
                component_at(found, row, col)
                if found[row, col]
                else grow_from_click(prob, row, col, threshold)[0]  # lower it locally
            )
            if len(self.clicks[key]) > 1 and region.any():  # a correction: stay near it
                gap = float(ndimage.distance_transform_edt(~region)[row, col])
                grown &= _disc(region.shape, row, col, WINDOW_SCALE * gap)
            grown = (grown & own) | _disc(region.shape, row, col, CLICK_DISC)
            region |= grown
            region_added |= grown
        if not click.positive and region[row, col]:
            removed = _disc(region.shape, row, col, CLICK_DISC)
            rejected = region & ~found
            if rejected[row, col]:
                removed |= component_at(rejected, row, col)
            elif self.negative_raise and region_added[row, col]:  # raise it locally
                doubtful = region_added & (prob <= self.negative_margin * prob[row, col])
                removed |= component_at(doubtful, row, col) & _disc(
                    region.shape, row, col, self.negative_window
                )
            if not region_added[row, col]:  # automatic output or a brush stroke
                removed |= component_at(region & ~region_added, row, col)
            removed &= own
            region &= ~removed
            region_added &= ~removed
        return mask.astype(np.asarray(current).dtype)


def _in_patch(clicks: list[Click], rows: slice, cols: slice) -> list[tuple[int, int, bool]]:
    return [
        (c.row - rows.start, c.col - cols.start, c.positive)
        for c in clicks
        if rows.start <= c.row < rows.stop and cols.start <= c.col < cols.stop
    ]


def _disc(shape: tuple[int, int], row: int, col: int, radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - row) ** 2 + (xx - col) ** 2 <= radius**2


def _nearer_than(
    shape: tuple[int, int], point: tuple[int, int], others: list[tuple[int, int]]
) -> np.ndarray:
    """Pixels nearer to ``point`` than to every one of ``others`` (all pixels if none)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    mine = (yy - point[0]) ** 2 + (xx - point[1]) ** 2
    nearer = np.ones(shape, dtype=bool)
    for r, c in others:
        nearer &= mine < (yy - r) ** 2 + (xx - c) ** 2
    return nearer
