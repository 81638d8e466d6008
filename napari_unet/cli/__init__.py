"""The ``napari-unet`` command: headless access to everything in the core.

One module per group of subcommands; each adds its parsers in ``register``.
"""

from __future__ import annotations

import argparse
import logging

from .. import __version__
from . import corrections, evaluation, segment, training
from .progress import ProgressBar

__all__ = ["ProgressBar", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-unet",
        description="Stroke-lesion segmentation with a U-Net: predict, train, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    segment.register(sub)
    training.register(sub)
    evaluation.register(sub)
    corrections.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    return int(args.func(args) or 0)
