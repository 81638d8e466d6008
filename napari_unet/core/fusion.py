"""Inference-time graph simplification: fold BatchNorm, fuse each ReLU into its convolution.

In eval mode a BatchNorm is an affine map per channel, so it can be merged into
the convolution's weights and bias: the same function, one memory pass fewer.

A ReLU after a convolution can run inside it: oneDNN applies it as a post-op while
the output is still in registers, where the eager path writes the convolution's
output and then reads and rewrites it. On narrow, full-resolution layers that
second pass costs as much as the convolution itself (docs/performance.md).

The expanding path's first convolution reads ``cat([skip, up])``. In channels-last
memory that concatenation interleaves both maps pixel by pixel, a slow copy at full
resolution; a convolution over a concatenation is the sum of convolutions over its
parts, so the fused path convolves the up-sampled half first and then the skip half
with "add the first result, then ReLU" as oneDNN post-ops: no concatenated map at all.

A 2x2, stride-2 max-pool becomes the elementwise maximum of its four strided views:
the same values, where PyTorch's generic pooling kernel (which also tracks indices) took
2.5-4x as long on channels-last maps (docs/performance.md, session 12).

The fused ops are the ones PyTorch's own inductor backend emits on the CPU
(``torch.ops.mkldnn._convolution_pointwise``); they are used only where a probe at
build time shows they run for that device and dtype, and the plain path stays.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import torch
from torch import nn


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every Conv2d -> BatchNorm2d pair folded (eval mode only)."""
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for index in range(len(children) - 1):
            conv, norm = children[index], children[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                _fold_pair(conv, norm)
                module[index + 1] = nn.Identity()
    return folded


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)


def _pointwise_op():
    mkldnn = getattr(torch.ops, "mkldnn", None)
    return getattr(mkldnn, "_convolution_pointwise", None) if mkldnn is not None else None


class ConvReLU(nn.Module):
    """A Conv2d whose ReLU runs as a oneDNN post-op: relu(conv(x)) in one pass."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not isinstance(conv.padding, tuple):
            raise ValueError(f"ConvReLU needs numeric padding, got {conv.padding!r}")
        self.weight = conv.weight
        self.bias = conv.bias
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)
        self.groups = conv.groups
        self._op = _pointwise_op()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._op(
            x,
            self.weight,
            self.bias,
            self.padding,
            self.stride,
            self.dilation,
            self.groups,
            "relu",
            [],
            "",
        )


class SplitSkipConvReLU(nn.Module):
    """relu(conv(cat([skip, up]))) without building the concatenation."""

    def __init__(self, conv: nn.Conv2d, skip_channels: int) -> None:
        super().__init__()
        if conv.groups != 1 or not isinstance(conv.padding, tuple):
            raise ValueError("SplitSkipConvReLU needs an ungrouped conv with numeric padding")
        weight = conv.weight.detach()
        self.skip_weight = nn.Parameter(weight[:, :skip_channels].clone(), requires_grad=False)
        self.up_weight = nn.Parameter(weight[:, skip_channels:].clone(), requires_grad=False)
        self.bias = conv.bias
        self.padding = list(conv.padding)
        self.stride = list(conv.stride)
        self.dilation = list(conv.dilation)

    def forward(self, skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        geometry = (self.padding, self.stride, self.dilation, 1)
        from_up = _pointwise_op()(up, self.up_weight, self.bias, *geometry, "none", [], "")
        return torch.ops.mkldnn._convolution_pointwise.binary(
            skip, from_up, self.skip_weight, None, *geometry, "add", None, "relu", [], ""
        )


class FusedUp(nn.Module):
    """An expanding-path block (up-convolution, crop, double conv) on fused oneDNN ops."""

    def __init__(self, up_block: nn.Module) -> None:
        super().__init__()
        conv1, conv2 = _convs_of(up_block.conv)
        skip_channels = conv1.in_channels - up_block.up.out_channels
        self.up = up_block.up
        self.first = SplitSkipConvReLU(conv1, skip_channels)
        self.second = ConvReLU(conv2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        from .unet import center_crop

        x = self.up(x)
        skip = center_crop(skip, x.shape[-2], x.shape[-1])
        return self.second(self.first(skip.contiguous(memory_format=torch.channels_last), x))


class MaxPool2x2(nn.Module):
    """``nn.MaxPool2d(2)`` as the maximum of four strided views (same values, NaN included)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode, as MaxPool2d
        x = x[..., :height, :width]
        top = torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2])
        return torch.maximum(top, torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


def _is_plain_2x2_pool(module: nn.Module) -> bool:
    def pair(value) -> tuple:
        return tuple(value) if isinstance(value, (tuple, list)) else (value, value)

    return (
        type(module) is nn.MaxPool2d
        and pair(module.kernel_size) == (2, 2)
        and pair(module.stride) == (2, 2)
        and pair(module.padding) == (0, 0)
        and pair(module.dilation) == (1, 1)
        and not module.ceil_mode
        and not module.return_indices
    )


def _is_fusable_double_conv(double_conv: nn.Module) -> bool:
    """Conv, ReLU, conv, ReLU with nothing but Identity (folded BatchNorm) between."""
    kinds = [type(m) for m in double_conv.children()]
    return kinds.count(nn.Conv2d) == 2 and set(kinds) <= {nn.Conv2d, nn.Identity, nn.ReLU}


def _convs_of(double_conv: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The two convolutions of a fusable DoubleConv (else ValueError)."""
    if not _is_fusable_double_conv(double_conv):
        kinds = [type(m).__name__ for m in double_conv.children()]
        raise ValueError(f"not a fusable double convolution (fold BatchNorm first): {kinds}")
    convs = [m for m in double_conv.children() if type(m) is nn.Conv2d]
    return convs[0], convs[1]


@lru_cache(maxsize=16)
def fused_relu_supported(
    device: torch.device, dtype: torch.dtype, memory_format: torch.memory_format
) -> bool:
    """True when the fused oneDNN conv+ReLU runs here and matches the eager result."""
    op = _pointwise_op()
    if op is None or device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    conv = nn.Conv2d(5, 4, 3, padding=1).to(dtype=dtype, memory_format=memory_format)
    x = torch.randn(1, 5, 8, 8).to(dtype).contiguous(memory_format=memory_format)
    skip, up = x[:, :3].contiguous(memory_format=memory_format), x[:, 3:]
    try:
        with torch.inference_mode():
            eager = torch.relu(conv(x))
            fused = ConvReLU(conv)(x)
            split = SplitSkipConvReLU(conv, 3)(skip, up.contiguous(memory_format=memory_format))
    except (RuntimeError, NotImplementedError):  # e.g. bf16 on a CPU without AVX-512
        return False
    tolerance = 1e-5 if dtype == torch.float32 else 5e-2
    return all(
        torch.allclose(result.float(), eager.float(), atol=tolerance, rtol=tolerance)
        for result in (fused, split)
    )


def fuse_conv_relu(model: nn.Module) -> nn.Module:
    """``model`` (changed in place and returned) with each Conv2d -> ReLU pair fused.

    Identity modules between the two (a folded BatchNorm) are skipped over; dropout or
    any other module between them keeps the pair apart. Expanding-path blocks of a
    U-Net become :class:`FusedUp` (no concatenation) and 2x2 max-pools
    :class:`MaxPool2x2`. Call after :func:`fold_batchnorm`.
    """
    from .unet import Up

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if _is_plain_2x2_pool(child):
                setattr(parent, name, MaxPool2x2())
                continue
            # a block with dropout keeps its concatenation; its pairs still fuse below
            if isinstance(child, Up) and _is_fusable_double_conv(child.conv):
                setattr(parent, name, FusedUp(child))
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.children())
        for index, conv in enumerate(children):
            if not isinstance(conv, nn.Conv2d) or type(conv) is not nn.Conv2d:
                continue
            following = index + 1
            while following < len(children) and isinstance(children[following], nn.Identity):
                following += 1
            if following < len(children) and isinstance(children[following], nn.ReLU):
                module[index] = ConvReLU(conv)
                module[following] = nn.Identity()
                children[following] = module[following]
    return model
