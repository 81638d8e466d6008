"""A lesion-wise Dice term, so a lacune counts as much as a territorial infarct.

The batch Dice + cross-entropy loss is dominated by large lesions: a 20-pixel lacune in a
batch that also holds a 3,000-pixel infarct barely moves it, and the shipped model misses
most lesions under 0.5 mL. This term follows the idea of "blob loss" (Kofler et al.,
2023): each connected lesion of each patch gets its own soft Dice, computed on the
prediction with the *other* lesions masked out, and the term is one minus their mean.
Every lesion then weighs the same, and predicted voxels away from any lesion still count
against each lesion's Dice, so the term does not reward false positives.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), bool)


def lesion_probability(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) lesion probability of a one-logit (sigmoid) or two-class (softmax) head."""
    if num_classes == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, 1]


def lesion_wise_dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """One minus the mean soft Dice over every 8-connected lesion of every patch.

    ``prob`` and ``target`` are (B, H, W). Returns 0 (with a gradient path) for a batch
    without lesions.
    """
    if prob.shape != target.shape or prob.ndim != 3:
        raise ValueError(
            f"expected (B, H, W) probability and target, got {prob.shape}, {target.shape}"
        )
    masks = target.detach().cpu().numpy() > 0.5
    dices = []
    for index in range(len(masks)):
        labels, count = ndimage.label(masks[index], structure=_EIGHT_CONNECTED)
        if count == 0:
            continue
        ids = torch.from_numpy(labels).to(prob.device)
        lesions = ids[None] == torch.arange(1, count + 1, device=prob.device)[:, None, None]
        lesions = lesions.to(prob.dtype)  # (K, H, W): one lesion per row
        others = (ids > 0).to(prob.dtype)[None] - lesions
        kept = prob[index][None] * (1 - others)  # the prediction without the other lesions
        intersection = (kept * lesions).sum(dim=(1, 2))
        dices.append(
            (2 * intersection + 1.0) / (kept.sum(dim=(1, 2)) + lesions.sum(dim=(1, 2)) + 1.0)
        )
    if not dices:
        return prob.sum() * 0.0
    return 1 - torch.cat(dices).mean()
