"""Shared fixtures. GUI tests need a display: in CI they must never be skipped."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from napari_unet.core.checkpoint import ModelBundle
from napari_unet.core.normalization import NormalizationSpec
from napari_unet.core.unet import UNet, UNetConfig


def pytest_configure(config):
    if os.environ.get("CI", "").lower() == "true" and not os.environ.get("DISPLAY"):
        # pytest-xvfb sets DISPLAY before this hook when Xvfb exists.
        raise pytest.UsageError(
            "CI=true but no DISPLAY: GUI tests would be skipped. Install Xvfb "
            "(scripts/test.sh does this as root on Debian) and re-run."
        )


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Keep the default workspace (platformdirs) out of the real home directory."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))


@pytest.fixture
def tiny_bundle() -> ModelBundle:
    """A small random same-padding network: fast, but a real U-Net."""
    torch.manual_seed(0)
    config = UNetConfig(in_channels=1, num_classes=1, base_width=8, depth=3, padding="same")
    return ModelBundle(UNet(config).eval(), config, NormalizationSpec(), "test-tiny")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
