"""SegmentationSession: thresholds, hand edits and the model's post-processing."""

import numpy as np

from napari_unet.core.session import SegmentationSession


def test_volume_results_drop_specks_but_slices_and_hand_edits_stay():
    session = SegmentationSession((4, 20, 20), min_lesion_voxels=5)
    labels = np.zeros((4, 20, 20), np.uint8)
    prob = np.zeros((4, 20, 20), np.float32)
    prob[1:3, 5:10, 5:10] = 0.9  # a lesion of 50 voxels
    prob[0, 15, 15] = 0.9  # a one-voxel speck
    session.add_probabilities(prob, (slice(None),) * 3, labels)
    assert labels.sum() == 50 and labels[0, 15, 15] == 0
    labels[3, 0, 0] = 1  # painted by hand: one voxel, kept despite the minimum
    session.set_threshold(0.5, labels)
    assert labels[3, 0, 0] == 1 and labels.sum() == 51
    single = np.zeros((1, 20, 20), np.float32)
    single[0, 15, 15] = 0.9
    session.add_probabilities(single, (slice(0, 1), slice(None), slice(None)), labels)
    assert labels[0, 15, 15] == 1  # a slice result is not filtered by a 3D minimum
