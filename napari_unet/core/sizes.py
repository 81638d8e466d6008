"""Input/output size arithmetic of the U-Net, without running it.

With valid padding each 3x3 convolution trims one pixel per side and every
2x2 pooling needs an even size, so only some input sizes are legal. These
helpers list them and trace every stage's shape (used for docs and tests).
"""

from __future__ import annotations

from dataclasses import dataclass

from .unet import UNetConfig


class IllegalInputSize(ValueError):
    """An input size that the network cannot process without cropping errors."""


@dataclass(frozen=True)
class Stage:
    """One named stage of the network and its output shape (H, W, C)."""

    name: str
    height: int
    width: int
    channels: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


def _conv_trim(config: UNetConfig) -> int:
    return 2 if config.padding == "valid" else 0


def _output_size_or_none(size: int, config: UNetConfig) -> int | None:
    trim = _conv_trim(config)
    for _ in range(config.depth):
        size -= 2 * trim
        if size <= 0 or size % 2:
            return None
        size //= 2
    size -= 2 * trim
    if size <= 0:
        return None
    for _ in range(config.depth):
        size = size * 2 - 2 * trim
        if size <= 0:
            return None
    return size


def output_size(size: int, config: UNetConfig) -> int:
    """Output side length for an input side length; raises if the size is illegal."""
    result = _output_size_or_none(size, config)
    if result is None:
        lower, upper = nearest_legal_sizes(size, config)
        raise IllegalInputSize(
            f"Input size {size} is not legal for a depth-{config.depth} U-Net with "
            f"{config.padding} padding (every max-pool needs an even size). "
            f"Nearest legal sizes: {lower} and {upper}."
        )
    return result


def is_legal(size: int, config: UNetConfig) -> bool:
    return _output_size_or_none(size, config) is not None


def legal_input_sizes(
    config: UNetConfig, minimum: int = 1, maximum: int = 1024
) -> list[tuple[int, int]]:
    """All legal (input, output) side lengths in ``[minimum, maximum]``."""
    pairs = []
    for size in range(max(1, minimum), maximum + 1):
        out = _output_size_or_none(size, config)
        if out is not None:
            pairs.append((size, out))
    return pairs


def nearest_legal_sizes(size: int, config: UNetConfig) -> tuple[int | None, int]:
    """The closest legal input size below (None if none) and above ``size``."""
    below = next((s for s in range(size - 1, 0, -1) if is_legal(s, config)), None)
    above = next(
        s for s in range(size + 1, size + 2**config.depth * 8 + 256) if is_legal(s, config)
    )
    return below, above


def smallest_input_for_output(min_output: int, config: UNetConfig) -> int:
    """Smallest legal input whose output side is at least ``min_output``."""
    size = 1
    while True:
        out = _output_size_or_none(size, config)
        if out is not None and out >= min_output:
            return size
        size += 1


def trace_stages(size: int, config: UNetConfig) -> list[Stage]:
    """Every stage of the network for a square input, as in the paper's figure."""
    output_size(size, config)  # validate first
    trim = _conv_trim(config)
    widths = config.widths()
    stages = [Stage("input", size, size, config.in_channels)]
    encoder_sizes = []
    for level in range(config.depth + 1):
        name = "bottleneck" if level == config.depth else f"enc{level + 1}"
        if level:
            size //= 2
            stages.append(Stage(f"pool{level}", size, size, widths[level - 1]))
        size -= trim
        stages.append(Stage(f"{name}.conv1", size, size, widths[level]))
        size -= trim
        stages.append(Stage(f"{name}.conv2", size, size, widths[level]))
        encoder_sizes.append(size)
    for step, level in enumerate(reversed(range(config.depth)), start=1):
        size *= 2
        stages.append(Stage(f"up{step}.upconv", size, size, widths[level]))
        stages.append(Stage(f"up{step}.crop", size, size, widths[level]))
        stages.append(Stage(f"up{step}.concat", size, size, 2 * widths[level]))
        size -= trim
        stages.append(Stage(f"up{step}.conv1", size, size, widths[level]))
        size -= trim
        stages.append(Stage(f"up{step}.conv2", size, size, widths[level]))
    stages.append(Stage("head", size, size, config.num_classes))
    return stages


def required_multiple(config: UNetConfig) -> int:
    """Tile offsets must be multiples of this for pooling grids to line up."""
    return 2**config.depth
