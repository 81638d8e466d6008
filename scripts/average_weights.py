"""Average the weights of checkpoints that share one architecture (a uniform "model soup").

Two fine-tunes from one trajectory (phase 4 continued from phase 3's best weights) sit in
one basin of the loss, so their average is a model in its own right, often between or
better than both. Every tensor is averaged, batch-norm running statistics included; the
post-processing (threshold, minimum size and extent) is copied from ``--postprocess-from``.

Usage: ``python scripts/average_weights.py A.safetensors B.safetensors [--weight 0.5]
--postprocess-from A.safetensors --output SOUP.safetensors``
"""

from __future__ import annotations

import argparse

import torch

from napari_unet.core.checkpoint import load_checkpoint, new_version_id, save_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--weight", type=float, default=0.5, help="share of the first model")
    parser.add_argument("--postprocess-from", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    if not 0.0 <= args.weight <= 1.0:
        parser.error(f"--weight must lie in [0, 1], got {args.weight}")
    first, second = load_checkpoint(args.first), load_checkpoint(args.second)
    if first.config != second.config:
        raise SystemExit(
            f"{args.first} and {args.second} have different architectures "
            f"({first.config} vs {second.config}); only one architecture can be averaged"
        )
    state_a, state_b = first.model.state_dict(), second.model.state_dict()
    averaged = {}
    for name, tensor in state_a.items():
        if tensor.is_floating_point():
            averaged[name] = args.weight * tensor + (1.0 - args.weight) * state_b[name]
        else:  # e.g. batch-norm step counters: keep the first model's
            averaged[name] = tensor.clone()
    first.model.load_state_dict(averaged)
    post = load_checkpoint(args.postprocess_from)
    first.threshold = post.threshold
    first.min_lesion_voxels = post.min_lesion_voxels
    first.min_lesion_extent_mm = post.min_lesion_extent_mm
    first.provenance = {
        "averaged_from": [first.version_id, second.version_id],
        "weight_of_first": args.weight,
        "postprocess_from": post.version_id,
        "recipe": "python scripts/average_weights.py "
        f"{args.first} {args.second} --weight {args.weight} "
        f"--postprocess-from {args.postprocess_from}",
    }
    first.metrics = {}
    first.version_id = new_version_id()
    with torch.no_grad():
        save_checkpoint(first, args.output)
    print(f"wrote {args.output} ({first.version_id})")


if __name__ == "__main__":
    main()
