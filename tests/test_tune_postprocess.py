"""scripts/tune_postprocess.py: the declared post-processing, with and without growth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from napari_unet.core.checkpoint import load_checkpoint, save_checkpoint, sidecar_path

from .helpers import write_nifti

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "tune_postprocess.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _dataset(root: Path, rng: np.random.Generator) -> Path:
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    for case in ("a", "b"):
        image = rng.normal(100, 10, (10, 32, 32)).astype(np.float32)
        mask = np.zeros((10, 32, 32), np.uint8)
        mask[3:7, 8:16, 8:16] = 1
        image[mask > 0] -= 40
        write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", image, np.eye(4))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", mask, np.eye(4))
    return root


def test_tuning_with_growth_declares_the_growth_it_scored(tiny_bundle, tmp_path, rng):
    model = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    data = _dataset(tmp_path / "data", rng)
    out = tmp_path / "tuned.safetensors"
    done = _run(
        "--model",
        str(model),
        "--data",
        str(data),
        "--cases",
        "2",
        "--grow-threshold",
        "0.2",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("threshold ")]
    # 0.2 lies under every threshold of the grid (0.3-0.7): 5 x 4 x 6 settings, all grown
    assert len(lines) == 120 and all("grow to 0.20" in line for line in lines)
    tuned = load_checkpoint(out)
    assert tuned.grow_threshold == 0.2 and tuned.threshold in (0.3, 0.4, 0.5, 0.6, 0.7)
    assert json.loads(sidecar_path(out).read_text())["grow_threshold"] == 0.2
    # tuning without growth declares none, whatever the model declared before
    tiny_bundle.grow_threshold = 0.1
    grown_model = save_checkpoint(tiny_bundle, tmp_path / "g.safetensors")
    plain = tmp_path / "plain.safetensors"
    done = _run(
        "--model", str(grown_model), "--data", str(data), "--cases", "2", "--output", str(plain)
    )
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(plain).grow_threshold is None


def test_copy_from_declares_one_growth_and_refuses_two(tiny_bundle, tmp_path):
    model = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    out = tmp_path / "copied.safetensors"
    done = _run(
        "--model",
        str(model),
        "--copy-from",
        str(model),
        "--grow-threshold",
        "0.3",
        "--output",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out).grow_threshold == 0.3
    done = _run(
        "--model",
        str(model),
        "--copy-from",
        str(model),
        "--grow-threshold",
        "0.1",
        "0.2",
        "--output",
        str(tmp_path / "two.safetensors"),
    )
    assert done.returncode == 2 and "give one --grow-threshold" in done.stderr
    done = _run(
        "--model",
        str(model),
        "--copy-from",
        str(model),
        "--grow-threshold",
        "1.5",
        "--output",
        str(tmp_path / "bad.safetensors"),
    )
    assert done.returncode == 2 and "between 0 and 1" in done.stderr


def test_tuning_on_held_out_cases_with_a_chosen_grid(tiny_bundle, tmp_path, rng):
    model = save_checkpoint(tiny_bundle, tmp_path / "m.safetensors")
    data = _dataset(tmp_path / "data", rng)
    for folder in ("imagesTs", "labelsTs"):
        (data / folder).mkdir()
    image = rng.normal(100, 10, (10, 32, 32)).astype(np.float32)
    mask = np.zeros((10, 32, 32), np.uint8)
    mask[2:8, 4:12, 4:12] = 1
    write_nifti(data / "imagesTs" / "held_0000.nii.gz", image, np.eye(4))
    write_nifti(data / "labelsTs" / "held.nii.gz", mask, np.eye(4))
    out = tmp_path / "held.safetensors"
    args = ["--model", str(model), "--data", str(data), "--cases", "5", "--output", str(out)]
    grid = ["--thresholds", "0.15", "0.25", "--min-extents", "0", "4", "11"]
    done = _run(*args, "--split", "val", *grid)
    assert done.returncode == 0, done.stderr
    assert "predicted 1/1 held" in done.stdout  # the one held-out case, not the two training ones
    lines = [line for line in done.stdout.splitlines() if line.startswith("threshold ")]
    assert len(lines) == 2 * 4 * 3  # thresholds x min voxels x extents
    tuned = load_checkpoint(out)
    assert tuned.threshold in (0.15, 0.25) and tuned.min_lesion_extent_mm in (0.0, 4.0, 11.0)
    assert tuned.provenance["postprocess_tuning"]["split"] == "val"
    assert tuned.provenance["postprocess_tuning"]["training_cases"] == ["held"]
    # a threshold outside (0, 1) is refused before anything runs
    done = _run(*args, "--thresholds", "0", "0.5")
    assert done.returncode == 2 and "--thresholds must lie between 0 and 1" in done.stderr
