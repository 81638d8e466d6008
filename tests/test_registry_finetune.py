"""Registry lineage and the fine-tune loop: it learns from corrections and the gate behaves."""

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.core import queue_io
from napari_unet.core.edit_queue import EditQueue, QueueError
from napari_unet.core.finetune import FinetuneConfig, evaluate_items, finetune, item_volume
from napari_unet.core.io import LoadedImage
from napari_unet.core.io.geometry import ImageGeometry
from napari_unet.core.registry import ModelRegistry, RegistryError, active_model_path


def _run(generator):
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


@pytest.fixture(scope="module")
def hyper_case():
    """A real brain with *hyperintense* lesions: a kind the default T1 model never saw."""
    from napari_unet.core.synth.generator import make_case

    case = make_case(424242, template_name="mni2009c_head", mode="hyper")
    geometry = ImageGeometry.from_affine(case.affine, case.image.shape)
    image = geometry.to_display(case.image)
    mask = geometry.to_display(case.label)
    return image, mask, geometry


def _queue_case(workspace, hyper_case, tmp_path, train, val, corrupt=False):
    image, mask, geometry = hyper_case
    path = tmp_path / "hyper.nii.gz"
    path.write_bytes(b"stand-in for the source file")  # only its hash is recorded
    loaded = LoadedImage(image, geometry, path)
    queue = EditQueue(workspace)
    train_mask = np.zeros_like(mask) if corrupt else mask
    queue_io.queue_slices(queue, loaded, train_mask, slices=train, split="train")
    if val:
        queue_io.queue_slices(queue, loaded, mask, slices=val, split="val")
    return queue


def _lesion_slices(mask, count, offset=0):
    slices = np.flatnonzero(mask.sum(axis=(1, 2)) > 60)
    return [int(s) for s in slices[offset::3][:count]]


def test_registry_starts_with_the_bundled_model_and_rolls_back(tmp_path):
    registry = ModelRegistry(tmp_path / "ws")
    versions = registry.versions()
    assert len(versions) == 1 and versions[0].active and versions[0].parent is None
    root = versions[0].version_id
    bundle = registry.load()
    bundle.version_id = "v2-test"
    registry.register(bundle, parent=root, note="test", activate=True)
    assert registry.active_id() == "v2-test"
    assert active_model_path(tmp_path / "ws").name == "v2-test.safetensors"
    registry.activate(root)  # roll back
    assert registry.active_id() == root
    with pytest.raises(RegistryError, match="no model version 'nope'"):
        registry.activate("nope")
    with pytest.raises(RegistryError, match="already registered"):
        registry.register(bundle, parent=root)
    out = registry.export("v2-test", tmp_path / "out" / "m.safetensors")
    assert out.exists() and out.with_suffix(".json").exists()


def test_a_new_bundled_default_joins_an_old_workspace_without_taking_over(
    tmp_path, tiny_bundle, monkeypatch
):
    """After an upgrade the new default is offered, not imposed; fine-tunes keep their root."""
    from napari_unet.core import registry as registry_module
    from napari_unet.core.checkpoint import save_checkpoint

    registry = ModelRegistry(tmp_path / "ws")
    old_root = registry.active_id()
    registry.close()
    tiny_bundle.version_id = "20991231T000000-newdflt"
    tiny_bundle.metrics = {"val_dice": 0.5}
    (tmp_path / "release").mkdir()
    new_default = save_checkpoint(tiny_bundle, tmp_path / "release" / "lesion_t1.safetensors")
    monkeypatch.setattr(registry_module, "resolve_model_path", lambda name: new_default)
    for _ in range(2):  # idempotent: the second opening registers nothing more
        registry = ModelRegistry(tmp_path / "ws")
        versions = {v.version_id: v for v in registry.versions()}
        registry.close()
        assert set(versions) == {old_root, "20991231T000000-newdflt"}
    added = versions["20991231T000000-newdflt"]
    assert added.parent is None and not added.active and "new in this release" in added.note
    assert added.metrics == {"val_dice": 0.5} and versions[old_root].active
    assert (tmp_path / "ws" / "models" / "20991231T000000-newdflt.safetensors").stat().st_size > 0


def test_finetune_learns_hyperintense_lesions_and_gate_promotes(tmp_path, hyper_case):
    _, mask, _ = hyper_case
    train = _lesion_slices(mask, 5)
    val = _lesion_slices(mask, 4, offset=1)
    assert not set(train) & set(val) and len(train) == 5 and len(val) == 4
    workspace = tmp_path / "ws"
    queue = _queue_case(workspace, hyper_case, tmp_path, train, val)
    registry = ModelRegistry(workspace)
    root = registry.active_id()
    base_bundle = registry.load()
    val_volumes = [
        item_volume(queue, i, base_bundle.normalization) for i in queue.items(split="val")
    ]
    before = evaluate_items(base_bundle, val_volumes, "cpu")
    events, result = _run(finetune(workspace, FinetuneConfig(steps=80, seed=1, device="cpu")))
    assert events[-1].step == 80
    assert result.base == root and result.base_metrics["dice"] == pytest.approx(before["dice"])
    # measurably better on other slices of the same kind of lesion
    assert result.candidate_metrics["dice"] > before["dice"] + 0.1
    # per-item Dice for the paired comparison the CLI and the widget print
    assert len(before["item_dice"]) == before["items"] == 4
    paired = result.item_dice_difference()
    assert paired.cases == 4 and paired.difference == pytest.approx(
        np.mean(result.candidate_metrics["item_dice"]) - np.mean(before["item_dice"])
    )
    assert paired.ci_low <= paired.difference <= paired.ci_high and paired.difference > 0
    assert result.promoted and registry.active_id() == result.candidate
    version = registry.get(result.candidate)
    assert version.parent == root
    assert sorted(i[0] for i in version.items) == sorted(i.id for i in queue.items("train"))
    assert version.hyperparameters["steps"] == 80
    assert version.metrics["queue_val"]["dice"] == pytest.approx(result.candidate_metrics["dice"])


def test_gate_refuses_a_worse_candidate(tmp_path, hyper_case):
    image, mask, geometry = hyper_case
    workspace = tmp_path / "ws"
    train, val = _lesion_slices(mask, 5), _lesion_slices(mask, 4, offset=1)
    queue = _queue_case(workspace, hyper_case, tmp_path, train, val)
    registry = ModelRegistry(workspace)
    root = registry.active_id()
    _, good = _run(finetune(workspace, FinetuneConfig(steps=80, seed=1, device="cpu")))
    assert good.promoted and registry.active_id() == good.candidate
    # bad "corrections": new revisions of the same slices that erase every lesion
    loaded = LoadedImage(image, geometry, tmp_path / "hyper.nii.gz")
    queue_io.queue_slices(queue, loaded, np.zeros_like(mask), slices=train, split="train")
    assert {i.revision for i in queue.items("train")} == {2}
    _, bad = _run(finetune(workspace, FinetuneConfig(steps=60, device="cpu", lr=1e-3)))
    assert bad.candidate_metrics["dice"] < bad.base_metrics["dice"]
    assert not bad.promoted and "kept inactive" in bad.reason
    assert registry.active_id() == good.candidate  # the good model stays active
    assert registry.get(bad.candidate).parent == good.candidate
    _, never = _run(finetune(workspace, FinetuneConfig(steps=1, device="cpu", promote="never")))
    assert not never.promoted and registry.get(never.candidate).note.startswith("promotion")
    _, forced = _run(
        finetune(workspace, FinetuneConfig(steps=1, device="cpu", promote="force"), base=root)
    )
    assert forced.promoted and registry.active_id() == forced.candidate


def test_cancelled_finetune_leaves_registry_unchanged_and_resumes(tmp_path, hyper_case):
    _, mask, _ = hyper_case
    workspace = tmp_path / "ws"
    _queue_case(workspace, hyper_case, tmp_path, _lesion_slices(mask, 3), [])
    registry = ModelRegistry(workspace)
    before = [v.version_id for v in registry.versions()]
    config = FinetuneConfig(steps=60, device="cpu")
    generator = finetune(workspace, config)
    for event in generator:
        if event.step == 30:
            break
    generator.close()  # the user pressed Cancel
    assert [v.version_id for v in registry.versions()] == before
    events, result = _run(finetune(workspace, config))
    assert events[0].message == "resumed at step 25"
    assert not result.promoted and "no validation items" in result.reason


def test_finetune_without_train_items_is_a_clear_error(tmp_path):
    with pytest.raises(QueueError, match="no train items"):
        _run(finetune(tmp_path / "ws", FinetuneConfig(steps=1)))


def test_models_cli(tmp_path, capsys):
    ws = str(tmp_path / "ws")
    assert main(["models", "list", "--workspace", ws]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 2 and "* " in out and "bundled default" in out
    root = ModelRegistry(ws).active_id()
    assert main(["models", "show", "--workspace", ws, root]) == 0
    assert main(["models", "activate", "--workspace", ws, "missing"]) == 2
    assert (
        main(
            [
                "models",
                "export",
                "--workspace",
                ws,
                root,
                "--output",
                str(tmp_path / "x.safetensors"),
            ]
        )
        == 0
    )
    assert (tmp_path / "x.safetensors").exists()


def test_click_model_is_imported_and_fine_tuned_with_simulated_clicks(tmp_path, hyper_case):
    """`models import` registers the click-guided model; fine-tuning keeps its click channels."""
    _, mask, _ = hyper_case
    workspace = tmp_path / "ws"
    _queue_case(workspace, hyper_case, tmp_path, _lesion_slices(mask, 3), None)
    assert main(["models", "import", "--workspace", str(workspace), "lesion-t1-clicks"]) == 0
    assert main(["models", "import", "--workspace", str(workspace), "nope.safetensors"]) == 2
    registry = ModelRegistry(workspace)
    clicks_version = next(v for v in registry.versions() if "imported" in v.note)
    assert not clicks_version.active  # importing does not change the active model
    config = FinetuneConfig(steps=4, seed=0, device="cpu")
    _, result = _run(finetune(workspace, config, base=clicks_version.version_id))
    candidate = registry.load(result.candidate)
    imported = registry.load(clicks_version.version_id)
    assert candidate.click_channels == 2 and candidate.config == imported.config
    assert candidate.context_slices == imported.context_slices
    assert registry.get(result.candidate).parent == clicks_version.version_id
    assert candidate.min_lesion_voxels == registry.load(clicks_version.version_id).min_lesion_voxels
    # and every click setting: threshold, zoom-in, mirror averaging (on for the bundled model)
    assert candidate.threshold == imported.threshold
    assert candidate.click_zoom == imported.click_zoom is not None
    assert candidate.click_flip_average is imported.click_flip_average is True


def test_item_dice_difference_needs_two_matched_items():
    from napari_unet.core.finetune import FinetuneResult

    one = FinetuneResult("c", "b", False, "", {"item_dice": [0.5]}, {"item_dice": [0.6]})
    assert one.item_dice_difference() is None  # one item: no interval
    old = FinetuneResult("c", "b", False, "", {"dice": 0.5}, {"dice": 0.6})
    assert old.item_dice_difference() is None  # metrics saved before per-item Dice existed
    two = FinetuneResult("c", "b", False, "", {"item_dice": [0.5, 0.7]}, {"item_dice": [0.6, 0.9]})
    assert two.item_dice_difference().difference == pytest.approx(0.15)
