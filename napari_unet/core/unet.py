"""The U-Net of Ronneberger et al. (2015) and its practical variants.

The forward pass reads like the paper's figure: a contracting path of double
3x3 convolutions and 2x2 max-pools, a bottleneck, then an expanding path of
2x2 up-convolutions, centre-cropped skip connections and double convolutions,
closed by a 1x1 convolution.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

Padding = Literal["valid", "same"]
Norm = Literal["none", "batch", "instance", "group"]

_PADDINGS = ("valid", "same")
_NORMS = ("none", "batch", "instance", "group")


@dataclass(frozen=True)
class UNetConfig:
    """Everything needed to rebuild a U-Net; serializes to JSON.

    ``num_classes=2`` gives the paper's two-class softmax; ``num_classes=1``
    gives a single lesion-vs-background channel with a sigmoid. Channels double at
    each level from ``base_width`` (the paper's rule) unless ``level_widths`` lists
    them, top level first: widths that fill the CPU's vector lanes run closer to its
    convolution ceiling (``benchmarks/width_schedules.py``).
    """

    in_channels: int = 1
    num_classes: int = 2
    base_width: int = 64
    depth: int = 4
    padding: Padding = "valid"
    norm: Norm = "none"
    dropout: float = 0.0
    level_widths: tuple[int, ...] = ()  # empty: base_width doubling at each level

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_widths", tuple(int(w) for w in self.level_widths))
        problems = []
        if self.in_channels < 1:
            problems.append(f"in_channels must be >= 1, got {self.in_channels}")
        if self.num_classes < 1:
            problems.append(f"num_classes must be >= 1, got {self.num_classes}")
        if self.base_width < 1:
            problems.append(f"base_width must be >= 1, got {self.base_width}")
        if self.depth < 1:
            problems.append(f"depth must be >= 1, got {self.depth}")
        if self.padding not in _PADDINGS:
            problems.append(f"padding must be one of {_PADDINGS}, got {self.padding!r}")
        if self.norm not in _NORMS:
            problems.append(f"norm must be one of {_NORMS}, got {self.norm!r}")
        if self.level_widths:
            if len(self.level_widths) != self.depth + 1:
                problems.append(
                    f"level_widths needs depth + 1 = {self.depth + 1} entries, got "
                    f"{len(self.level_widths)}"
                )
            if min(self.level_widths) < 1:
                problems.append(f"level_widths must all be >= 1, got {self.level_widths}")
            if self.level_widths[0] != self.base_width:
                problems.append(
                    f"level_widths starts at {self.level_widths[0]} but base_width is "
                    f"{self.base_width}; they must agree"
                )
        if self.norm == "group" and any(w % 8 for w in self.widths()):
            problems.append("group norm uses 8 groups, so every width must be a multiple of 8")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if problems:
            raise ValueError("Invalid U-Net config: " + "; ".join(problems))

    @classmethod
    def paper(cls) -> UNetConfig:
        """The exact configuration of the 2015 paper (572x572 -> 388x388x2)."""
        return cls()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown U-Net config keys: {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.level_widths:
            data["level_widths"] = list(self.level_widths)
        else:  # sidecars of doubling networks stay as they were
            del data["level_widths"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> UNetConfig:
        return cls.from_dict(json.loads(text))

    def widths(self) -> list[int]:
        """Channel count at each level, from the top down to the bottleneck."""
        if self.level_widths:
            return list(self.level_widths)
        return [self.base_width * 2**level for level in range(self.depth + 1)]


def center_crop(feature: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop the centre ``height x width`` of an NCHW map (the paper's skip crop)."""
    top = (feature.shape[-2] - height) // 2
    left = (feature.shape[-1] - width) // 2
    return feature[..., top : top + height, left : left + width]


def _norm_layer(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(8, channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by optional norm and a ReLU."""

    def __init__(self, in_ch: int, out_ch: int, config: UNetConfig) -> None:
        pad = 0 if config.padding == "valid" else 1
        bias = config.norm == "none"
        layers: list[nn.Module] = []
        for index, channels_in in enumerate((in_ch, out_ch)):
            layers += [
                nn.Conv2d(channels_in, out_ch, 3, padding=pad, bias=bias),
                _norm_layer(config.norm, out_ch),
                nn.ReLU(inplace=True),
            ]
            if index == 0 and config.dropout > 0:
                layers.append(nn.Dropout2d(config.dropout))
        super().__init__(*layers)


class Down(nn.Sequential):
    """2x2 max-pool, then a double convolution that doubles the channels."""

    def __init__(self, in_ch: int, out_ch: int, config: UNetConfig) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch, config))


class Up(nn.Module):
    """2x2 up-convolution to the skip's width (half the channels when widths double, as in
    the paper), crop-and-concat, double convolution."""

    def __init__(self, in_ch: int, out_ch: int, config: UNetConfig) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch, config)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        skip = center_crop(skip, x.shape[-2], x.shape[-1])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net returning logits of shape (N, num_classes, H_out, W_out)."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig.paper()
        widths = self.config.widths()
        self.inc = DoubleConv(self.config.in_channels, widths[0], self.config)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], self.config) for i in range(self.config.depth)
        )
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], self.config) for i in reversed(range(self.config.depth))
        )
        self.head = nn.Conv2d(widths[0], self.config.num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.inc(x)
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            x = up(x, skip)
        return self.head(x)

    def lesion_probability(self, logits: torch.Tensor) -> torch.Tensor:
        """Map logits to the foreground (lesion) probability, shape (N, H, W)."""
        if self.config.num_classes == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=1)[:, 1]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
