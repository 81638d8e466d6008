"""Export: the lesion mask and the probability map as NIfTI in the source geometry."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container, FileEdit, PushButton
from napari.utils.notifications import show_info

from ..core.io import case_name, write_labels_nifti, write_probability_nifti
from .layers import geometry_from_metadata


class ExportPanel(Container):
    def __init__(self, owner) -> None:
        super().__init__(labels=True, label="export")
        self.owner = owner
        self.save_path = FileEdit(label="save to", mode="w", filter="*.nii.gz")
        self.save_button = PushButton(text="Save lesion mask (NIfTI)")
        self.save_prob_button = PushButton(text="Save probabilities (NIfTI)")
        self.extend([self.save_path, self.save_button, self.save_prob_button])
        self.save_button.changed.connect(
            lambda _v=None: owner._guarded(lambda: self.save(probabilities=False))
        )
        self.save_prob_button.changed.connect(
            lambda _v=None: owner._guarded(lambda: self.save(probabilities=True))
        )

    def save(self, probabilities: bool) -> Path:
        """Write the mask (uint8) or probabilities (float32); never replaces an existing file."""
        source = self.owner._source()
        path = Path(self.save_path.value)
        if not path.name or path.is_dir():
            raise ValueError("Choose a file name to save to (…_lesion.nii.gz)")
        if not path.name.endswith((".nii", ".nii.gz")):
            path = path.with_name(path.name + ".nii.gz")
        geometry = geometry_from_metadata(source.metadata)
        if geometry is None:
            raise ValueError(
                f"{source.name!r} was not opened by napari-unet, so its source geometry is "
                "unknown; use File > Save Selected Layers instead"
            )
        if probabilities:
            stem = case_name(path).removesuffix("_lesion")
            target = path.with_name(f"{stem}_prob.nii.gz")
            written = write_probability_nifti(
                self.owner.session(source).probability, geometry, target
            )
        else:
            written = write_labels_nifti(self.owner.lesion_layer(source).data, geometry, path)
        show_info(f"napari-unet: saved {written}")
        return written
