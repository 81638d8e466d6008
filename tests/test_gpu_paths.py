"""The GPU levers' CPU-side contracts: what runs where, and the benchmark's device plumbing.

The CUDA paths themselves (graph replay, pinned copies) were measured and checked for
equal outputs on a lent H200 with benchmarks/gpu_levers.py (docs/performance.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core import benchmark, benchmark_volume
from napari_unet.core.cuda_graphs import GraphedForward
from napari_unet.core.inference import Predictor


def test_cpu_predictor_uses_no_gpu_lever(tiny_bundle):
    predictor = Predictor(tiny_bundle, device="cpu")
    assert predictor.batch_size == 4
    assert predictor.cuda_graphs is False and predictor.pin_memory is False
    x = torch.randn(2, tiny_bundle.config.in_channels, 64, 64).to(predictor.dtype)
    x = x.contiguous(memory_format=predictor.memory_format)
    with torch.inference_mode():
        assert torch.equal(predictor.run_model(x), predictor.model(x))


def test_cuda_graphs_on_a_cpu_are_refused_with_the_reason(tiny_bundle):
    with pytest.raises(ValueError, match="needs a CUDA device; this predictor runs on cpu"):
        Predictor(tiny_bundle, device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="need a model on a CUDA device, not cpu"):
        GraphedForward(tiny_bundle.model)


def test_pin_memory_is_ignored_off_the_gpu(tiny_bundle):
    assert Predictor(tiny_bundle, device="cpu", pin_memory=True).pin_memory is False


def test_benchmark_paths_and_batches_on_a_cpu(tiny_bundle):
    paths = benchmark.inference_paths(tiny_bundle, torch.device("cpu"))
    assert [(p.precision == "fp32", p.memory_format) for p in paths][2] == (
        True,
        torch.contiguous_format,
    )
    assert paths[1].fused is False
    assert [benchmark.forward_batches(p) for p in paths] == [[1, 4]] * 3
    assert benchmark.ceiling_batch(torch.device("cpu")) == 4


def test_timed_waits_for_the_device_once_per_repeat():
    calls = []
    times = benchmark.timed(lambda: None, repeats=3, warmup=2, sync=lambda: calls.append(1))
    assert len(times) == 3 and len(calls) == 4  # after the warm-up, then each repeat


def test_volume_worker_reports_no_gpu_memory_on_a_cpu(tiny_bundle, tmp_path, monkeypatch):
    from napari_unet.core.checkpoint import save_checkpoint

    path = tmp_path / "tiny.safetensors"
    save_checkpoint(tiny_bundle, path)
    monkeypatch.setattr(benchmark_volume, "MNI_SHAPE", (20, 48, 40))
    result = benchmark_volume._volume_worker(str(path), real=False, plain=True, device="cpu")
    assert result["shape"] == "40x48x20"
    assert result["peak_gpu_mb"] == 0.0 and result["seconds"] > 0
    assert result["path"] == "fp32, NCHW"


@pytest.mark.parametrize("mirror", [False, True])
def test_device_resident_volume_matches_the_host_path(mirror):
    """The on-device volume path (the GPU default) gives the host path's answer; it runs
    on the CPU too, so this is tested here with the shipped 2.5D model."""
    from napari_unet.core.models import get_model

    bundle = get_model(None)
    assert bundle.context_slices == 1
    volume = np.random.default_rng(3).normal(100, 20, (7, 37, 45)).astype(np.float32)
    volume[2, :5] = np.nan  # the same NaN handling on both paths
    options = {"precision": "fp32", "channels_last": False, "fused": False}
    host = Predictor(bundle, device="cpu", device_resident=False, **options)
    resident = Predictor(bundle, device="cpu", device_resident=True, **options)
    indices = [0, 3, 6]
    expected = host.predict_volume_slices(volume, indices, axis=1) if not mirror else None
    if mirror:
        expected = host.predict_volume(volume, axis=1, mirror=True)
        answer = resident.predict_volume(volume, axis=1, mirror=True)
    else:
        answer = resident.predict_volume_slices(volume, indices, axis=1)
    assert answer.shape == volume.shape
    assert np.abs(answer - expected).max() < 1e-5
    assert answer[:, 1].max() == 0 if not mirror else answer[:, 1].max() > 0


def test_device_resident_volume_with_click_channels(tiny_bundle):
    from napari_unet.core.training.click_training import with_click_channels

    bundle = with_click_channels(tiny_bundle, 2)
    volume = np.random.default_rng(4).normal(0, 1, (5, 24, 40)).astype(np.float32)
    host = Predictor(bundle, device="cpu", device_resident=False, precision="fp32")
    resident = Predictor(bundle, device="cpu", device_resident=True, precision="fp32")
    np.testing.assert_allclose(
        resident.predict_volume(volume), host.predict_volume(volume), atol=1e-5
    )


def test_tiled_slices_take_the_host_path(tiny_bundle):
    from napari_unet.core import device_volume
    from napari_unet.core.tiling import plan_tiles

    assert device_volume.supports(plan_tiles(40, 40, tiny_bundle.config, 512))
    assert not device_volume.supports(plan_tiles(300, 40, tiny_bundle.config, 128))


def test_training_precision_is_fp32_on_cuda_and_unchanged_on_a_cpu():
    from napari_unet.core.precision import resolve_precision, resolve_training_precision

    cpu = torch.device("cpu")
    assert resolve_training_precision("auto", cpu) == resolve_precision("auto", cpu)
    assert resolve_training_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_training_precision("bf16", torch.device("cuda")) == "bf16"  # explicit wins


def test_benchmark_on_a_missing_gpu_says_so(capsys, tmp_path, monkeypatch):
    from napari_unet.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    assert main(["benchmark", "--device", "cuda", "--json", str(tmp_path / "b.json")]) == 2
    assert "Device 'cuda' is not available on this machine" in capsys.readouterr().err
    assert not (tmp_path / "b.json").exists()
