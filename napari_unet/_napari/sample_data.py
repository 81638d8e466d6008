"""The bundled sample: a real MNI152 head with a synthetic chronic infarct and its truth."""

from __future__ import annotations

from ..core.io import read_image
from ..core.sample import SAMPLE_LESION, SAMPLE_T1
from .layers import image_layer_tuple, labels_layer_tuple


def sample_brain() -> list[tuple]:
    image = read_image(SAMPLE_T1)
    truth = read_image(SAMPLE_LESION)
    truth_layer = labels_layer_tuple(truth.data > 0.5, image, "true lesion (synthetic)")
    truth_layer[1]["visible"] = False
    return [image_layer_tuple(image, "T1 sample brain"), truth_layer]
