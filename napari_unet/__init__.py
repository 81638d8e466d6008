"""napari-unet: stroke-lesion segmentation in napari with a U-Net you can correct and fine-tune."""

__version__ = "0.1.0"
