"""The fused inference graph (conv+ReLU post-ops, concatenation-free skips) equals the plain one."""

import os

import numpy as np
import pytest
import torch

from napari_unet.core.fusion import (
    ConvReLU,
    FusedUp,
    MaxPool2x2,
    SplitSkipConvReLU,
    fold_batchnorm,
    fuse_conv_relu,
    fused_relu_supported,
)
from napari_unet.core.unet import UNet, UNetConfig, Up

CPU = torch.device("cpu")
FP32_CL = (CPU, torch.float32, torch.channels_last)

# The shipped inference path needs oneDNN: skip only on a developer's exotic build, never
# in CI, where a missing oneDNN must fail these tests rather than hide them.
pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available() and os.environ.get("CI") != "true",
    reason="PyTorch built without oneDNN",
)


def _trained_bn_model(config: UNetConfig) -> UNet:
    torch.manual_seed(5)
    model = UNet(config)
    with torch.no_grad():  # non-trivial running statistics, so folding matters
        model.train()
        for _ in range(4):
            model(torch.randn(3, config.in_channels, 64, 64) * 2 + 0.5)
    return model.eval()


def _fused_and_plain(model: UNet) -> tuple[torch.nn.Module, torch.nn.Module]:
    plain = fold_batchnorm(model).to(memory_format=torch.channels_last)
    fused = fuse_conv_relu(fold_batchnorm(model).to(memory_format=torch.channels_last))
    return fused, plain


def test_the_fused_ops_run_on_this_cpu():
    # CI's CPU has oneDNN; if the probe fails here, the fast path is silently off
    assert fused_relu_supported(*FP32_CL)
    assert not fused_relu_supported(torch.device("meta"), torch.float32, torch.channels_last)


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(num_classes=1, base_width=12, depth=4, padding="same", norm="batch"),
        UNetConfig(num_classes=2, base_width=8, depth=2, padding="valid", norm="none"),
        UNetConfig(in_channels=3, num_classes=1, base_width=8, depth=3, padding="same"),
        UNetConfig(
            num_classes=1,
            base_width=16,
            depth=4,
            padding="same",
            norm="batch",
            level_widths=(16, 24, 48, 96, 192),
        ),
    ],
    ids=["shipped-like", "paper-like-valid", "three-channels", "level-widths"],
)
def test_fused_graph_computes_the_plain_graph(config):
    fused, plain = _fused_and_plain(_trained_bn_model(config))
    size = 92 if config.padding == "valid" else 80
    x = torch.randn(2, config.in_channels, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, result = plain(x), fused(x)
    assert result.shape == expected.shape
    torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-4)
    # every expanding block lost its concatenation; every ReLU moved into a convolution
    assert sum(isinstance(m, FusedUp) for m in fused.modules()) == config.depth
    assert not any(isinstance(m, Up) for m in fused.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in fused.modules())
    assert sum(isinstance(m, MaxPool2x2) for m in fused.modules()) == config.depth
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in fused.modules())
    assert sum(isinstance(m, (ConvReLU, SplitSkipConvReLU)) for m in fused.modules()) == (
        2 * (2 * config.depth + 1)
    )


def test_a_block_with_dropout_keeps_its_concatenation_and_stays_exact():
    config = UNetConfig(num_classes=1, base_width=8, depth=2, padding="same", dropout=0.2)
    fused, plain = _fused_and_plain(_trained_bn_model(config))
    assert sum(isinstance(m, Up) for m in fused.modules()) == config.depth  # not FusedUp
    assert not any(isinstance(m, torch.nn.ReLU) for m in fused.modules())  # pairs still fused
    x = torch.randn(1, 1, 48, 48).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), plain(x), rtol=1e-4, atol=1e-4)


def test_split_skip_conv_equals_conv_over_the_concatenation():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 5, 3, padding=1).eval().to(memory_format=torch.channels_last)
    skip = torch.randn(2, 4, 20, 24).contiguous(memory_format=torch.channels_last)
    up = torch.randn(2, 4, 20, 24).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = torch.relu(conv(torch.cat([skip, up], 1)))
        wrong_order = torch.relu(conv(torch.cat([up, skip], 1)))
        result = SplitSkipConvReLU(conv, 4)(skip, up)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)
    assert (result - wrong_order).abs().max() > 1e-2  # the halves are not interchangeable


def test_predictor_uses_the_fused_graph_and_matches_the_plain_predictor(rng):
    from napari_unet.core.inference import Predictor
    from napari_unet.core.models import get_model

    bundle = get_model(None)
    volume = rng.normal(100, 20, (5, 96, 112)).astype(np.float32)
    volume[:, 30:60, 40:80] -= 60
    fast = Predictor(bundle, device="cpu", precision="fp32")
    plain = Predictor(bundle, device="cpu", precision="fp32", fused=False)
    assert fast.fused and not plain.fused
    assert any(isinstance(m, FusedUp) for m in fast.model.modules())
    assert not any(isinstance(m, FusedUp) for m in bundle.model.modules())  # bundle untouched
    a, b = fast.predict_volume(volume, 0), plain.predict_volume(volume, 0)
    assert np.abs(a - b).max() < 1e-5
    assert ((a >= 0.5) == (b >= 0.5)).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("size", [(64, 64), (33, 50), (7, 9)])
def test_four_view_max_pool_equals_max_pool2d(dtype, size):
    torch.manual_seed(1)
    x = torch.randn(3, 8, *size).to(dtype).contiguous(memory_format=torch.channels_last)
    x[0, 2, 3, 4] = float("nan")  # NaN propagates as in MaxPool2d
    with torch.inference_mode():
        result, expected = MaxPool2x2()(x), torch.nn.MaxPool2d(2)(x)
    assert result.shape == expected.shape == (3, 8, size[0] // 2, size[1] // 2)
    torch.testing.assert_close(result, expected, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(result[0, 2, 1, 2])
    # stays channels-last, so the next convolution gets its layout without a copy
    assert result.is_contiguous(memory_format=torch.channels_last)


def test_only_plain_2x2_pools_are_replaced():
    model = torch.nn.Sequential(
        torch.nn.MaxPool2d(2),
        torch.nn.MaxPool2d(3),
        torch.nn.MaxPool2d(2, ceil_mode=True),
        torch.nn.MaxPool2d((2, 2), stride=(2, 2)),
    )
    kinds = [type(m).__name__ for m in fuse_conv_relu(model)]
    assert kinds == ["MaxPool2x2", "MaxPool2d", "MaxPool2d", "MaxPool2x2"]
