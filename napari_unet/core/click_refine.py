"""Click-consistent refinement of a click-guided network's answer (f-BRS style).

A click-guided network sometimes ignores a click: the pixel a user marked "not lesion"
stays above the threshold, or a marked lesion pixel stays below it. Feature
backpropagating refinement (f-BRS; Sofiiuk et al., CVPR 2020) then adjusts the network
itself for this one answer: a per-channel scale and bias on the features that enter the
network's last block are optimised (L-BFGS) until every click is on its side of the
threshold by a margin, with a penalty that keeps them near the identity. Only the last
block reruns, and only on a box around the clicks and the object, so a refinement costs
a few milliseconds. The answer changes smoothly, in the network's own terms, rather than
by a hard local rule.

The refiner keeps its own float32 copy of the network (batch norm folded), built once.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from .checkpoint import ModelBundle
from .fusion import fold_batchnorm
from .tiling import plan_tiles
from .unet import center_crop

_HALO = 2  # pixels: the last block's two 3x3 convolutions read this far


@dataclass(frozen=True)
class RefineSettings:
    """How hard the refiner pushes the answer towards the clicks."""

    iterations: int = 20  # L-BFGS function evaluations at most
    margin: float = 0.1  # a click is obeyed when its probability clears the threshold by this
    penalty: float = 1e-3  # weight of the squared distance of the scales and biases from identity
    reach: int = 16  # pixels around the clicks and the object that the refinement may change

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"refine iterations must be >= 1, not {self.iterations}")
        if not 0.0 <= self.margin < 0.5:
            raise ValueError(f"refine margin must be in [0, 0.5), not {self.margin}")
        if self.penalty < 0:
            raise ValueError(f"refine penalty must be >= 0, not {self.penalty}")
        if self.reach < 0:
            raise ValueError(f"refine reach must be >= 0, not {self.reach}")


class ClickRefiner:
    """Refines one patch's probability so that it obeys its clicks (see the module doc)."""

    def __init__(self, bundle: ModelBundle, settings: RefineSettings | None = None) -> None:
        if not bundle.click_channels:
            raise ValueError(f"model {bundle.version_id} has no click channels to refine with")
        model = bundle.model
        model = fold_batchnorm(model) if bundle.config.norm == "batch" else copy.deepcopy(model)
        self.model = model.float().eval().requires_grad_(False)
        self.config = bundle.config
        self.settings = settings or RefineSettings()

    @torch.no_grad()
    def features(self, normalized: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """The input of the network's last block for a (C, H, W) input, and its offset.

        The input is padded as the predictor pads it; the offset locates pixel (0, 0).
        """
        height, width = normalized.shape[-2:]
        plan = plan_tiles(height, width, self.config, max_tile=max(height, width) + 64)
        if plan.count != 1:
            raise ValueError(f"a {height}x{width} patch does not fit one tile of this network")
        x = torch.from_numpy(np.ascontiguousarray(plan.pad(normalized)))[None].float()
        net = self.model
        skips = []
        x = net.inc(x)
        for down in net.downs:
            skips.append(x)
            x = down(x)
        for up, skip in zip(net.ups[:-1], reversed(skips[1:]), strict=True):
            x = up(x, skip)
        last = net.ups[-1]
        x = last.up(x)
        skip = center_crop(skips[0], x.shape[-2], x.shape[-1])
        offset = (-plan.rows.out_offset, -plan.cols.out_offset)
        return torch.cat([skip, x], dim=1), offset

    def _tail_probability(self, features: torch.Tensor) -> torch.Tensor:
        last = self.model.ups[-1]
        logits = self.model.head(last.conv(features))
        return self.model.lesion_probability(logits)[0]

    def refine(
        self,
        normalized: np.ndarray,
        prob: np.ndarray,
        clicks: list[tuple[int, int, bool]],
        threshold: float,
        focus: np.ndarray,
        blend: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray | None:
        """``prob`` with the box around ``clicks`` and ``focus`` refined, or None.

        ``normalized`` is the network's (C, H, W) input for the patch whose probability is
        ``prob`` (H, W); ``clicks`` are (row, col, positive) in the patch. The engine's answer
        is ``scale * prob + offset`` where ``blend = (scale, offset)`` (a zoomed look mixed
        in); the clicks are enforced on that answer. Returns None when there is nothing to
        refine (no click inside the patch).
        """
        height, width = prob.shape
        inside = [(r, c, p) for r, c, p in clicks if 0 <= r < height and 0 <= c < width]
        if not inside:
            return None
        box = _box(focus, inside, self.settings.reach, prob.shape)
        feats, (top, left) = self.features(normalized)
        r0, r1, c0, c1 = box
        lo_r, lo_c = top + r0 - _HALO, left + c0 - _HALO
        hi_r, hi_c = top + r1 + _HALO, left + c1 + _HALO
        pad = (
            max(0, -lo_c),
            max(0, hi_c - feats.shape[-1]),
            max(0, -lo_r),
            max(0, hi_r - feats.shape[-2]),
        )
        crop = feats[..., max(lo_r, 0) : hi_r, max(lo_c, 0) : hi_c]
        if any(pad):  # the network's own zero padding at the map's border
            crop = torch.nn.functional.pad(crop, pad)
        scale_map = torch.ones(r1 - r0, c1 - c0)
        offset_map = torch.zeros(r1 - r0, c1 - c0)
        if blend is not None:
            scale_map = torch.from_numpy(np.ascontiguousarray(blend[0][r0:r1, c0:c1]))
            offset_map = torch.from_numpy(np.ascontiguousarray(blend[1][r0:r1, c0:c1]))
        rows = torch.tensor([r - r0 for r, _, _ in inside])
        cols = torch.tensor([c - c0 for _, c, _ in inside])
        sign = torch.tensor([1.0 if p else -1.0 for _, _, p in inside])
        # positive: p >= threshold + margin; negative: p <= threshold - margin
        target = threshold + sign * self.settings.margin

        channels = crop.shape[1]
        gain = torch.ones(1, channels, 1, 1, requires_grad=True)
        shift = torch.zeros(1, channels, 1, 1, requires_grad=True)

        def answer() -> torch.Tensor:
            p = self._tail_probability(crop * gain + shift)[_HALO:-_HALO, _HALO:-_HALO]
            return scale_map * p + offset_map

        def loss_of(final: torch.Tensor) -> torch.Tensor:
            shortfall = torch.relu(sign * (target - final[rows, cols]))
            keep = ((gain - 1) ** 2).sum() + (shift**2).sum()
            return (shortfall**2).sum() + self.settings.penalty * keep

        optimizer = torch.optim.LBFGS(
            [gain, shift],
            lr=1.0,
            max_iter=self.settings.iterations,
            line_search_fn="strong_wolfe",
            tolerance_change=1e-9,
        )

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = loss_of(answer())
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        with torch.no_grad():
            refined = self._tail_probability(crop * gain + shift)[_HALO:-_HALO, _HALO:-_HALO]
        out = prob.copy()
        out[r0:r1, c0:c1] = refined.numpy()
        return out


def _box(
    focus: np.ndarray, clicks: list[tuple[int, int, bool]], reach: int, shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Rows r0:r1 and columns c0:c1 around the clicks and ``focus``, widened by ``reach``."""
    rows = [r for r, _, _ in clicks]
    cols = [c for _, c, _ in clicks]
    if focus.any():
        found_rows, found_cols = np.nonzero(focus)
        rows += [int(found_rows.min()), int(found_rows.max())]
        cols += [int(found_cols.min()), int(found_cols.max())]
    r0, r1 = max(0, min(rows) - reach), min(shape[0], max(rows) + reach + 1)
    c0, c1 = max(0, min(cols) - reach), min(shape[1], max(cols) + reach + 1)
    return r0, r1, c0, c1
