"""The U-Net reproduces the paper's figure, stage by stage."""

import json

import pytest
import torch

from napari_unet.core.sizes import (
    IllegalInputSize,
    legal_input_sizes,
    nearest_legal_sizes,
    output_size,
    trace_stages,
)
from napari_unet.core.unet import UNet, UNetConfig, center_crop, count_parameters

# (stage, H, W, C) from Ronneberger et al. 2015, Fig. 1, for a 572x572x1 input.
PAPER_STAGES = {
    "enc1.conv1": (570, 64),
    "enc1.conv2": (568, 64),
    "pool1": (284, 64),
    "enc2.conv1": (282, 128),
    "enc2.conv2": (280, 128),
    "pool2": (140, 128),
    "enc3.conv2": (136, 256),
    "pool3": (68, 256),
    "enc4.conv2": (64, 512),
    "pool4": (32, 512),
    "bottleneck.conv1": (30, 1024),
    "bottleneck.conv2": (28, 1024),
    "up1.upconv": (56, 512),
    "up1.crop": (56, 512),
    "up1.concat": (56, 1024),
    "up1.conv1": (54, 512),
    "up1.conv2": (52, 512),
    "up2.conv2": (100, 256),
    "up3.conv2": (196, 128),
    "up4.upconv": (392, 64),
    "up4.conv2": (388, 64),
    "head": (388, 2),
}


@pytest.fixture(scope="module")
def paper_forward():
    """Run the real paper network once on 572x572 and record every stage's shape."""
    torch.manual_seed(0)
    model = UNet(UNetConfig.paper()).eval()
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(_module, _inputs, output):
            shapes[name] = tuple(output.shape[1:])

        return hook

    model.inc.register_forward_hook(record("enc1.conv2"))
    model.inc[0].register_forward_hook(record("enc1.conv1"))
    for level, down in enumerate(model.downs, start=1):
        name = "bottleneck" if level == model.config.depth else f"enc{level + 1}"
        down[0].register_forward_hook(record(f"pool{level}"))
        down[1][0].register_forward_hook(record(f"{name}.conv1"))
        down[1].register_forward_hook(record(f"{name}.conv2"))
    for step, up in enumerate(model.ups, start=1):
        up.up.register_forward_hook(record(f"up{step}.upconv"))
        up.conv[0].register_forward_pre_hook(
            lambda _m, inputs, step=step: shapes.__setitem__(
                f"up{step}.concat", tuple(inputs[0].shape[1:])
            )
        )
        up.conv[0].register_forward_hook(record(f"up{step}.conv1"))
        up.conv.register_forward_hook(record(f"up{step}.conv2"))
    model.head.register_forward_hook(record("head"))
    with torch.inference_mode():
        out = model(torch.randn(1, 1, 572, 572))
    return model, shapes, out


def test_paper_parameter_count(paper_forward):
    model, _, _ = paper_forward
    assert count_parameters(model) == 31_030_658  # "31.0 M"


def test_paper_output_shape(paper_forward):
    _, _, out = paper_forward
    assert tuple(out.shape) == (1, 2, 388, 388)


# The crop is not a module: the concat's 1024 channels at 56x56 and
# test_center_crop_takes_the_middle check it in the real forward pass.
@pytest.mark.parametrize("stage", sorted(s for s in PAPER_STAGES if not s.endswith(".crop")))
def test_paper_stage_shapes_real_forward(paper_forward, stage):
    _, shapes, _ = paper_forward
    size, channels = PAPER_STAGES[stage]
    assert shapes[stage] == (channels, size, size)


def test_analytic_trace_matches_paper_and_forward(paper_forward):
    _, shapes, _ = paper_forward
    stages = {s.name: s for s in trace_stages(572, UNetConfig.paper())}
    for name, (size, channels) in PAPER_STAGES.items():
        assert stages[name].shape == (size, size, channels), name
    for name, (c, h, w) in shapes.items():
        assert stages[name].shape == (h, w, c), name


def test_center_crop_takes_the_middle():
    encoder_map = torch.arange(64 * 64, dtype=torch.float32).reshape(1, 1, 64, 64)
    cropped = center_crop(encoder_map, 56, 56)
    assert cropped.shape == (1, 1, 56, 56)
    assert cropped[0, 0, 0, 0].item() == 4 * 64 + 4
    assert cropped[0, 0, -1, -1].item() == 59 * 64 + 59


def test_sigmoid_head_gives_probability_in_unit_interval():
    config = UNetConfig(num_classes=1, base_width=8, depth=2, padding="same")
    model = UNet(config).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 1, 32, 32))
        prob = model.lesion_probability(logits)
    assert logits.shape == (2, 1, 32, 32)
    assert prob.shape == (2, 32, 32)
    assert float(prob.min()) > 0.0 and float(prob.max()) < 1.0


@pytest.mark.parametrize("norm", ["none", "batch", "instance", "group"])
def test_variants_run_and_keep_same_size(norm):
    config = UNetConfig(
        in_channels=2, num_classes=2, base_width=8, depth=3, padding="same", norm=norm, dropout=0.1
    )
    model = UNet(config).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 2, 48, 40))
    assert out.shape == (2, 2, 48, 40)
    has_norm = any(
        isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d, torch.nn.GroupNorm))
        for m in model.modules()
    )
    assert has_norm == (norm != "none")


def test_config_json_round_trip():
    config = UNetConfig(
        in_channels=3,
        num_classes=1,
        base_width=16,
        depth=3,
        padding="same",
        norm="group",
        dropout=0.2,
    )
    text = config.to_json()
    assert json.loads(text)["norm"] == "group"
    assert UNetConfig.from_json(text) == config


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"padding": "full"}, "padding"),
        ({"depth": 0}, "depth"),
        ({"norm": "layer"}, "norm"),
        ({"dropout": 1.5}, "dropout"),
        ({"norm": "group", "base_width": 12}, "group"),
        ({"base_width": 16, "level_widths": (16, 32, 64)}, "depth \\+ 1"),
        ({"base_width": 12, "level_widths": (16, 32, 64, 128, 256)}, "must agree"),
        ({"base_width": 8, "level_widths": (8, 0, 64, 128, 256)}, ">= 1"),
        ({"norm": "group", "base_width": 16, "level_widths": (16, 20, 48, 96, 192)}, "group"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetConfig(**kwargs)


def test_level_widths_build_that_network_and_round_trip():
    config = UNetConfig(
        num_classes=1,
        base_width=16,
        padding="same",
        norm="batch",
        level_widths=[16, 24, 48, 96, 192],
    )
    assert config.widths() == [16, 24, 48, 96, 192] and config.level_widths == (16, 24, 48, 96, 192)
    assert json.loads(config.to_json())["level_widths"] == [16, 24, 48, 96, 192]
    assert UNetConfig.from_json(config.to_json()) == config
    assert "level_widths" not in UNetConfig.paper().to_dict()  # old sidecars unchanged
    model = UNet(config)
    assert [d[1][0].out_channels for d in model.downs] == [24, 48, 96, 192]
    # each up-convolution gives the skip's width, so the concatenation is twice that
    assert [(u.up.out_channels, u.conv[0].in_channels) for u in model.ups] == [
        (96, 192),
        (48, 96),
        (24, 48),
        (16, 32),
    ]
    assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
    stages = {s.name: s.channels for s in trace_stages(64, config)}
    assert stages["bottleneck.conv2"] == 192 and stages["up4.conv2"] == 16


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="Unknown"):
        UNetConfig.from_dict({"in_channels": 1, "widht": 3})


def test_legal_sizes_list_the_paper_size():
    pairs = legal_input_sizes(UNetConfig.paper(), 500, 600)
    assert (572, 388) in pairs
    assert all((size - 572) % 16 == 0 for size, _ in pairs)
    assert all(output_size(size, UNetConfig.paper()) == out for size, out in pairs)


def test_illegal_size_names_nearest_legal_sizes():
    with pytest.raises(IllegalInputSize, match=r"Nearest legal sizes: 556 and 572"):
        output_size(570, UNetConfig.paper())
    assert nearest_legal_sizes(570, UNetConfig.paper()) == (556, 572)


def test_illegal_size_fails_in_real_forward_too():
    model = UNet(UNetConfig(base_width=4, depth=2)).eval()
    assert output_size(44, model.config) == 4
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 44, 44)).shape[-1] == 4
    with pytest.raises(IllegalInputSize):
        output_size(42, model.config)
