"""Write synthetic cases as an nnU-Net v2 raw dataset, the layout ``train`` also reads."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

from .generator import VALIDATION_SEED_OFFSET, Acquisition, Mode, make_case
from .templates import LICENCE


def _write_one(job: tuple[Path, str, str, int, Mode, str | None, Acquisition]) -> dict:
    root, case_id, split, seed, mode, template, profile = job
    images_dir, labels_dir = (
        ("imagesTr", "labelsTr") if split == "train" else ("imagesTs", "labelsTs")
    )
    case = make_case(seed, template_name=template, mode=mode, acquisition_profile=profile)
    image = nib.Nifti1Image(case.image.astype(np.float32), case.affine)
    image.set_data_dtype(np.int16)  # nibabel scales floats into int16 with scl_slope
    nib.save(image, root / images_dir / f"{case_id}_0000.nii.gz")
    nib.save(nib.Nifti1Image(case.label, case.affine), root / labels_dir / f"{case_id}.nii.gz")
    return {
        "case": case_id,
        "split": split,
        "seed": seed,
        "template": case.template,
        "mode": mode,
        "lesion_ml": round(case.lesion_ml, 3),
        "lesions": ";".join(f"{s.kind}:{s.volume_ml:.2f}" for s in case.lesions),
        "resolution": case.acquisition.get("resolution", ""),
        "acquisition": profile,
    }


def write_synthetic_dataset(
    root: str | Path,
    n_train: int,
    n_val: int,
    seed: int = 0,
    mode: Mode = "hypo",
    workers: int = 2,
    template: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    acquisition: Acquisition = "standard",
    val_start: int = 0,
) -> Path:
    """Generate ``n_train`` training and ``n_val`` validation cases under ``root``.

    Training seeds are ``seed * 10000 + i``; validation seeds are ``900000 + i``
    (the fixed validation split, identical for every training seed). ``acquisition``
    applies to training cases only: validation cases always use the standard profile.
    ``val_start`` skips the first validation cases, so a fresh held-out set
    (``synthval_0050`` onwards, say) is written without regenerating the earlier ones.
    """
    root = Path(root)
    if seed * 10000 + n_train >= VALIDATION_SEED_OFFSET:
        raise ValueError("training seeds would reach the validation seed range")
    if val_start < 0:
        raise ValueError(f"val_start must be 0 or more, not {val_start}")
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    jobs = [
        (root, f"synth_{i:04d}", "train", seed * 10000 + i, mode, template, acquisition)
        for i in range(n_train)
    ]
    jobs += [
        (root, f"synthval_{i:04d}", "val", VALIDATION_SEED_OFFSET + i, mode, template, "standard")
        for i in range(val_start, val_start + n_val)
    ]
    rows = []
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, row in enumerate(pool.map(_write_one, jobs), start=1):
            rows.append(row)
            if progress:
                progress(done, len(jobs))
    with open(root / "cases.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    dataset = {
        "channel_names": {"0": "T1"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "name": "napari-unet synthetic chronic stroke (T1)",
        "licence": LICENCE,
        "description": "Real MNI152 brains with simulated chronic infarcts; see cases.csv.",
    }
    (root / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return root
