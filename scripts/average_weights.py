"""Average the weights of checkpoints that share one architecture (a uniform "model soup").

Two fine-tunes from one trajectory (phase 4 continued from phase 3's best weights) sit in
one basin of the loss, so their average is a model in its own right. Every tensor is
averaged, batch-norm running statistics included (``napari_unet.core.averaging``); the
post-processing (threshold, minimum size and extent) is copied from ``--postprocess-from``.

Usage: ``python scripts/average_weights.py A.safetensors B.safetensors [--weight 0.5]
--postprocess-from A.safetensors --output SOUP.safetensors``
"""

from __future__ import annotations

import argparse

from napari_unet.core.averaging import average_bundles
from napari_unet.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--weight", type=float, default=0.5, help="share of the first model")
    parser.add_argument("--postprocess-from", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    try:
        first, second = load_checkpoint(args.first), load_checkpoint(args.second)
        post = load_checkpoint(args.postprocess_from)
        soup = average_bundles(first, second, args.weight)
    except (CheckpointError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    soup.threshold = post.threshold
    soup.min_lesion_voxels = post.min_lesion_voxels
    soup.grow_threshold = post.grow_threshold
    soup.min_lesion_extent_mm = post.min_lesion_extent_mm
    soup.provenance = {
        **soup.provenance,
        "postprocess_from": post.version_id,
        "recipe": "python scripts/average_weights.py "
        f"{args.first} {args.second} --weight {args.weight} "
        f"--postprocess-from {args.postprocess_from}",
    }
    try:
        save_checkpoint(soup, args.output)
    except CheckpointError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.output} ({soup.version_id})")


if __name__ == "__main__":
    main()
