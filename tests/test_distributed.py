"""Data-parallel fine-tuning with torchrun (gloo, 2 CPU processes) equals one process."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_unet.core import queue_io
from napari_unet.core.checkpoint import load_checkpoint
from napari_unet.core.edit_queue import EditQueue
from napari_unet.core.finetune import FinetuneConfig, finetune
from napari_unet.core.io import read_image
from napari_unet.core.progress import drain
from napari_unet.core.registry import ModelRegistry
from napari_unet.core.sample import SAMPLE_LESION, SAMPLE_T1


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "ws"
    image = read_image(SAMPLE_T1)
    mask = (read_image(SAMPLE_LESION).data > 0.5).astype(np.uint8)
    slices = np.flatnonzero(mask.sum(axis=(1, 2)) > 200)[:4]
    queue = EditQueue(ws)
    queue_io.queue_slices(queue, image, mask, slices=[int(s) for s in slices])
    ModelRegistry(ws).close()
    return ws


def test_two_gloo_processes_match_one_process_with_the_same_shards(workspace, tmp_path):
    single_ws = tmp_path / "single"
    shutil.copytree(workspace, single_ws)
    steps = 4
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "napari_unet.cli",
        "finetune",
        "--workspace",
        str(workspace),
        "--steps",
        str(steps),
        "--promote",
        "force",
        "--device",
        "cpu",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("candidate ") == 1  # only rank 0 registers and reports
    torch.set_num_threads(1)
    single = drain(
        finetune(single_ws, FinetuneConfig(steps=steps, shards=2, device="cpu", promote="force"))
    )
    distributed_registry = ModelRegistry(workspace)
    versions = distributed_registry.versions()
    assert len(versions) == 2 and versions[1].hyperparameters["shards"] == 2
    ddp = load_checkpoint(distributed_registry.path(versions[1].version_id)).model.state_dict()
    one = load_checkpoint(ModelRegistry(single_ws).path(single.candidate)).model.state_dict()
    base = distributed_registry.load(versions[0].version_id).model.state_dict()
    moved = 0.0
    for key, value in one.items():
        if "running" in key or "num_batches" in key:
            continue  # DDP keeps rank 0's BatchNorm buffers; parameters are what must agree
        torch.testing.assert_close(ddp[key], value, rtol=1e-4, atol=2e-5)
        moved = max(moved, float((value - base[key]).abs().max()))
    assert moved > 1e-4  # the runs really trained
