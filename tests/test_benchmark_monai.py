"""The MONAI comparison of the benchmark suite runs for 2.5D models too."""

from __future__ import annotations

import math

from napari_unet.core import benchmark, benchmark_volume
from napari_unet.core.checkpoint import save_checkpoint
from napari_unet.core.training.context_init import with_context_slices

# MONAI is the benchmark extra, which scripts/setup_env.sh installs with the test tools.


def test_monai_comparison_with_a_25d_model(tiny_bundle, tmp_path, monkeypatch):
    """FLOPs are counted on the model's own input channels (3 for a 2.5D model)."""
    path = tmp_path / "ctx.safetensors"
    save_checkpoint(with_context_slices(tiny_bundle, 1), path)
    monkeypatch.setattr(benchmark_volume, "MNI_SHAPE", (4, 64, 64))  # a small volume, same code
    report = benchmark.Report()
    benchmark_volume.bench_monai(report, str(path), repeats=1)
    rows = {row.name: row.value for row in report.rows}
    ratio = next(v for name, v in rows.items() if name.startswith("ours / MONAI time ["))
    assert math.isfinite(ratio) and ratio > 0
    assert rows["MONAI sliding window, same volume"] > 0
