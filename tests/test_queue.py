"""The edit queue: provenance, revisions, soft delete, crash safety, concurrency, export."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.core import queue_io
from napari_unet.core.edit_queue import EditQueue, QueueError
from napari_unet.core.io import read_image
from napari_unet.core.workspace import WorkspaceError

from .helpers import write_nifti

WORKER = Path(__file__).with_name("queue_worker.py")


@pytest.fixture
def case(tmp_path, rng):
    """An anisotropic LPS image and a mask with lesion voxels on three axial slices."""
    affine = np.diag([-0.9, -0.9, 3.0, 1.0])
    data = rng.normal(100, 10, (30, 28, 8)).astype(np.float32)
    mask = np.zeros((30, 28, 8), np.uint8)
    mask[10:15, 10:14, 2] = 1
    mask[12:16, 8:12, 3] = 1
    mask[5:7, 5:7, 6] = 1
    image_path = write_nifti(tmp_path / "scan.nii.gz", data, affine)
    mask_path = write_nifti(tmp_path / "scan_mask.nii.gz", mask, affine)
    return image_path, mask_path


def test_queue_slices_with_provenance(tmp_path, case):
    image_path, mask_path = case
    queue = EditQueue(tmp_path / "ws")
    image = read_image(image_path)
    mask = read_image(mask_path).data.astype(np.uint8)
    prediction = np.zeros_like(mask)
    prediction[3, 10:12, 10:12] = 1  # the model's guess on axial slice 3 (display order)
    items = queue_io.queue_slices(
        queue, image, mask, prediction, split="val", note="checked", model_version="m1"
    )
    assert [i.slice_index for i in items] == [2, 3, 6]  # display axis 0 is axial (S)
    first = items[1]
    assert first.axis_name == "axial" and first.split == "val" and first.note == "checked"
    assert first.model_version == "m1" and first.revision == 1
    assert len(first.source_sha256) == 64 and first.source_path.endswith("scan.nii.gz")
    assert first.spacing == pytest.approx([3.0, 0.9, 0.9])
    arrays = queue.arrays(first)
    np.testing.assert_array_equal(arrays["image"][0], image.data[3])
    np.testing.assert_array_equal(arrays["mask"], mask[3])
    assert first.lesion_voxels == int(mask[3].sum())
    added = int(((mask[3] == 1) & (prediction[3] == 0)).sum())
    removed = int(((mask[3] == 0) & (prediction[3] == 1)).sum())
    assert (first.added_voxels, first.removed_voxels) == (added, removed)
    # the slab affine puts the slice where it was in the world
    world = np.asarray(first.affine) @ [0, 4, 5, 1]
    expected = image.geometry.display_affine @ [3, 4, 5, 1]
    np.testing.assert_allclose(world, expected)
    assert queue.counts() == {"train": 0, "val": 3}


def test_revisions_supersede_without_overwriting(tmp_path, case):
    image_path, mask_path = case
    queue = EditQueue(tmp_path / "ws")
    image = read_image(image_path)
    mask = read_image(mask_path).data.astype(np.uint8)
    old = queue_io.queue_slices(queue, image, mask, slices=[3])[0]
    mask[3] = 0
    mask[3, 0:2, 0:2] = 1
    new = queue_io.queue_slices(queue, image, mask, slices=[3])[0]
    assert new.revision == 2 and new.supersedes == old.id
    assert [i.id for i in queue.items()] == [new.id]
    assert [h.revision for h in queue.history(new.id)] == [1, 2]
    assert queue.arrays(old)["mask"].sum() == 16  # the old revision still reads back
    queue.remove(new.id)
    assert queue.items() == []
    assert len(queue.items(include_deleted=True, include_superseded=True)) == 2
    queue.restore(new.id)
    assert [i.id for i in queue.items()] == [new.id]
    queue.set_split(new.id, "val")
    assert queue.counts() == {"train": 0, "val": 1}


def test_bad_input_leaves_store_unchanged(tmp_path, rng):
    queue = EditQueue(tmp_path / "ws")
    before = sorted(os.listdir(tmp_path / "ws" / "items"))
    kwargs = dict(
        source_path="x",
        source_sha256="s",
        axis=0,
        axis_name="axial",
        slice_index=0,
        affine=np.eye(4),
        spacing=(1, 1, 1),
    )
    with pytest.raises(QueueError, match="does not match the image slice"):
        queue.add(np.zeros((1, 8, 8)), np.zeros((8, 9), np.uint8), None, **kwargs)
    with pytest.raises(QueueError, match="only 0 and 1"):
        queue.add(np.zeros((1, 8, 8)), np.full((8, 8), 2, np.uint8), None, **kwargs)
    with pytest.raises(QueueError, match="split"):
        queue.add(np.zeros((1, 8, 8)), np.zeros((8, 8), np.uint8), None, split="test", **kwargs)
    assert queue.items(include_deleted=True, include_superseded=True) == []
    assert sorted(os.listdir(tmp_path / "ws" / "items")) == before


def test_full_disk_leaves_store_unchanged(tmp_path, monkeypatch):
    queue = EditQueue(tmp_path / "ws")

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WorkspaceError, match="No space left.*unchanged"):
        queue.add(
            np.zeros((1, 8, 8)),
            np.zeros((8, 8), np.uint8),
            None,
            source_path="x",
            source_sha256="s",
            axis=0,
            axis_name="axial",
            slice_index=0,
            affine=np.eye(4),
            spacing=(1, 1, 1),
        )
    monkeypatch.undo()
    assert queue.items() == [] and os.listdir(tmp_path / "ws" / "items") == []


def test_read_only_workspace_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *_a, **_k: False)
    with pytest.raises(WorkspaceError, match="not writable"):
        EditQueue(tmp_path / "ro")


def test_unknown_schema_version_is_refused(tmp_path):
    EditQueue(tmp_path / "ws").close()
    with sqlite3.connect(tmp_path / "ws" / "napari-unet.sqlite3") as connection:
        connection.execute("PRAGMA user_version = 99")
    with pytest.raises(WorkspaceError, match="schema version 99"):
        EditQueue(tmp_path / "ws")


def _snapshot(queue: EditQueue) -> dict:
    return {
        item.uid: {k: v.tobytes() for k, v in queue.arrays(item).items()}
        for item in queue.items(include_deleted=True, include_superseded=True)
    }


def test_sigkill_at_random_points_never_loses_or_half_stores_items(tmp_path):
    """Kill a queuing process at random moments, again and again; check everything after each."""
    workspace = tmp_path / "ws"
    EditQueue(workspace).close()
    rng = np.random.default_rng(0)
    previous: dict = {}
    for round_index in range(8):
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(workspace), f"k{round_index}", "0"],
            stdout=subprocess.PIPE,
        )
        process.stdout.readline()  # at least one item committed in this round
        time.sleep(float(rng.uniform(0.0, 0.3)))
        process.send_signal(signal.SIGKILL)
        process.wait()
        queue = EditQueue(workspace)
        assert queue.check_integrity() == []
        snapshot = _snapshot(queue)  # every visible item reads back (checksums verified)
        for uid, arrays in previous.items():
            assert snapshot[uid] == arrays  # earlier items bit-identical
        assert len(snapshot) > len(previous)
        previous = snapshot
        queue.close()
    queue = EditQueue(workspace)
    orphans = [
        p
        for p in (workspace / "items").iterdir()
        if p.name not in {i.array_file for i in queue.items()}
    ]
    assert queue.collect_garbage(older_than_s=0) == len(orphans)
    assert queue.check_integrity() == []


def test_two_processes_queue_concurrently_without_losses(tmp_path):
    workspace = tmp_path / "ws"
    EditQueue(workspace).close()
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(workspace), tag, "25"], stdout=subprocess.DEVNULL
        )
        for tag in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in processes] == [0, 0]
    queue = EditQueue(workspace)
    items = queue.items()
    assert len(items) == 50
    assert {i.note for i in items} == {f"{t}-{n}" for t in "ab" for n in range(25)}
    assert queue.check_integrity() == []


def test_cli_add_list_show_remove_export(tmp_path, case, capsys):
    image_path, mask_path = case
    ws = str(tmp_path / "ws")
    assert (
        main(
            [
                "queue",
                "add",
                "--workspace",
                ws,
                "--image",
                str(image_path),
                "--mask",
                str(mask_path),
                "--slices",
                "2,3",
                "--note",
                "cli",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "queue",
                "add",
                "--workspace",
                ws,
                "--image",
                str(image_path),
                "--mask",
                str(mask_path),
                "--slices",
                "6",
                "--split",
                "val",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "queued item 1: axial slice 2" in out and "queued item 3: axial slice 6" in out
    assert main(["queue", "list", "--workspace", ws]) == 0
    assert "current items: 2 train, 1 val" in capsys.readouterr().out
    assert main(["queue", "show", "--workspace", ws, "1"]) == 0
    assert json.loads(capsys.readouterr().out.split("history:")[0])["note"] == "cli"
    assert main(["queue", "remove", "--workspace", ws, "2"]) == 0
    assert main(["queue", "restore", "--workspace", ws, "2"]) == 0
    out_dir = tmp_path / "export"
    assert (
        main(["queue", "export", "--workspace", ws, "--format", "nifti", "--output", str(out_dir)])
        == 0
    )
    mask = nib.load(out_dir / "item00001_mask.nii.gz")
    assert mask.shape == (1, 28, 30)
    assert mask.header.get_zooms() == pytest.approx((3.0, 0.9, 0.9))
    assert (out_dir / "provenance.csv").read_text().count("\n") == 4
    assert main(["queue", "check", "--workspace", ws]) == 0


def test_cli_rejects_mismatched_mask_and_empty_selection(tmp_path, case, rng, capsys):
    image_path, _ = case
    other = write_nifti(
        tmp_path / "other.nii.gz", np.zeros((30, 28, 8), np.uint8), np.diag([1.0, 1.0, 1.0, 1.0])
    )
    ws = str(tmp_path / "ws")
    assert (
        main(["queue", "add", "--workspace", ws, "--image", str(image_path), "--mask", str(other)])
        == 2
    )
    assert "other.nii.gz: its affine differs" in capsys.readouterr().err
    empty = write_nifti(
        tmp_path / "empty.nii.gz", np.zeros((30, 28, 8), np.uint8), np.diag([-0.9, -0.9, 3.0, 1.0])
    )
    assert (
        main(["queue", "add", "--workspace", ws, "--image", str(image_path), "--mask", str(empty)])
        == 2
    )
    assert "nothing to queue" in capsys.readouterr().err
    assert EditQueue(tmp_path / "ws").items() == []


def test_nnunet_export_passes_nnunets_own_integrity_check(tmp_path, case):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    image_path, mask_path = case
    queue = EditQueue(tmp_path / "ws")
    image = read_image(image_path)
    mask = read_image(mask_path).data.astype(np.uint8)
    queue_io.queue_slices(queue, image, mask, slices=[2, 3])
    queue_io.queue_slices(queue, image, mask, slices=[6], split="val")
    out = queue_io.export_nnunet(queue, tmp_path / "Dataset501_Lesions")
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [
        "item00001_0000.nii.gz",
        "item00002_0000.nii.gz",
    ]
    assert (out / "labelsTs" / "item00003.nii.gz").exists()
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 2
    label = nib.load(out / "labelsTr" / "item00002.nii.gz")
    assert label.header.get_zooms() == pytest.approx((3.0, 0.9, 0.9))
    verify_dataset_integrity(str(out), num_processes=1)  # raises on any problem
