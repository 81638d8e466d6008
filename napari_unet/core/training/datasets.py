"""Finding image/mask pairs on disk: nnU-Net raw layout or BIDS-like (ISLES 2022, ATLAS v2.0).

nnU-Net raw::

    DATASET/imagesTr/CASE_0000.nii.gz   (CASE_0001... for more channels)
    DATASET/labelsTr/CASE.nii.gz
    DATASET/imagesTs, labelsTs          (optional; used as the validation split)

BIDS-like::

    DATASET/sub-XX/[ses-YY/]anat/*_T1w.nii.gz             (ATLAS) or dwi/*_dwi.nii.gz (ISLES)
    DATASET/derivatives/**/sub-XX/**/*{mask,lesion,msk}*.nii.gz
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class CasePaths:
    case: str
    images: tuple[Path, ...]  # one per channel
    mask: Path
    split: str = "train"


class DatasetLayoutError(ValueError):
    """A folder that is neither an nnU-Net raw dataset nor a BIDS-like one."""


def find_cases(root: str | Path, modality: str = "T1w") -> list[CasePaths]:
    """All cases under ``root``; raises with what was expected if none are found."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: not a folder")
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():  # Ts alone: a test set
        return _nnunet_cases(root)
    cases = _bids_cases(root, modality)
    if cases:
        return cases
    raise DatasetLayoutError(
        f"{root}: no cases found. Expected an nnU-Net raw dataset (imagesTr/CASE_0000.nii.gz + "
        "labelsTr/CASE.nii.gz) or a BIDS-like dataset (sub-*/anat/*_T1w.nii.gz with masks under "
        "derivatives/)."
    )


def find_cases_in(roots: Sequence[str | Path], modality: str = "T1w") -> list[CasePaths]:
    """The cases of several datasets, for training on their union.

    A case name that occurs in more than one dataset is prefixed with its dataset's folder
    name; all cases must have the same number of image channels.
    """
    per_root = [(Path(root), find_cases(root, modality)) for root in roots]
    if len(per_root) == 1:
        return per_root[0][1]
    counts = Counter(c.case for _, cases in per_root for c in cases)
    combined: list[CasePaths] = []
    for root, cases in per_root:
        combined += [
            replace(c, case=f"{root.name}_{c.case}") if counts[c.case] > 1 else c for c in cases
        ]
    names = [c.case for c in combined]
    if len(set(names)) != len(names):
        raise DatasetLayoutError(
            f"case names still repeat after prefixing folder names ({', '.join(map(str, roots))}); "
            "give the datasets distinct folder names"
        )
    channels = {len(c.images) for c in combined}
    if len(channels) > 1:
        detail = ", ".join(
            f"{root}: {sorted({len(c.images) for c in cases})}" for root, cases in per_root
        )
        raise DatasetLayoutError(
            f"datasets differ in image channels per case ({detail}); train on datasets of one "
            "modality set at a time"
        )
    return combined


def _nnunet_cases(root: Path) -> list[CasePaths]:
    cases = []
    for images_dir, labels_dir, split in (
        ("imagesTr", "labelsTr", "train"),
        ("imagesTs", "labelsTs", "val"),
    ):
        if not (root / images_dir).is_dir() or not (root / labels_dir).is_dir():
            continue
        channels: dict[str, dict[int, Path]] = {}
        for path in sorted((root / images_dir).glob("*.nii*")):
            match = re.match(r"(.+)_(\d{4})\.nii(\.gz)?$", path.name)
            if not match:
                raise DatasetLayoutError(f"{path}: nnU-Net images must be named CASE_0000.nii.gz")
            channels.setdefault(match.group(1), {})[int(match.group(2))] = path
        for case, by_channel in sorted(channels.items()):
            mask = _first_existing(root / labels_dir, case)
            if mask is None:
                raise DatasetLayoutError(f"{root / labels_dir}: no label for case {case!r}")
            expected = list(range(len(by_channel)))
            if sorted(by_channel) != expected:
                raise DatasetLayoutError(f"{case}: channels {sorted(by_channel)} are not 0..N-1")
            images = tuple(by_channel[i] for i in expected)
            cases.append(CasePaths(case, images, mask, split))
    if not cases:
        raise DatasetLayoutError(
            f"{root}: imagesTr/imagesTs hold no cases with labels (CASE_0000.nii.gz in "
            "imagesTr with CASE.nii.gz in labelsTr, or the same in imagesTs and labelsTs)"
        )
    return cases


def _first_existing(folder: Path, case: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        candidate = folder / f"{case}{suffix}"
        if candidate.exists():
            return candidate
    return None


def _bids_cases(root: Path, modality: str) -> list[CasePaths]:
    derivatives = root / "derivatives"
    masks: dict[str, Path] = {}
    if derivatives.is_dir():
        for path in sorted(derivatives.rglob("*.nii*")):
            name = path.name.lower()
            if any(key in name for key in ("mask", "lesion", "msk")):
                key = _subject_session(path.name)
                if key:
                    masks.setdefault(key, path)
    cases = []
    pattern = f"*_{modality}.nii*"
    for image in sorted(root.glob(f"sub-*/**/{pattern}")):
        if "derivatives" in image.parts:
            continue
        key = _subject_session(image.name)
        if key and key in masks:
            cases.append(CasePaths(key, (image,), masks[key]))
    return cases


def _subject_session(name: str) -> str | None:
    sub = re.search(r"(sub-[A-Za-z0-9]+)", name)
    if not sub:
        return None
    ses = re.search(r"(ses-[A-Za-z0-9]+)", name)
    return sub.group(1) + (f"_{ses.group(1)}" if ses else "")
