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


def test_rederiving_keeps_hand_edits_and_regions_the_network_never_saw():
    session = SegmentationSession((3, 8, 8))
    labels = np.zeros((3, 8, 8), np.uint8)
    labels[2, 0, 0] = 1  # painted before any network ran there
    prob = np.full((2, 8, 8), 0.2, np.float32)
    prob[:, 2:5, 2:5] = 0.8
    session.add_probabilities(prob, (slice(0, 2), slice(None), slice(None)), labels)
    assert labels[:2].sum() == 18 and labels[2, 0, 0] == 1
    labels[0, 3, 3] = 0  # erased by hand inside the lesion
    labels[1, 7, 7] = 1  # painted by hand outside it
    changed = session.set_threshold(0.1, labels)  # everything computed is now lesion
    assert changed == (slice(0, 2), slice(0, 8), slice(0, 8))
    assert labels[0, 3, 3] == 0 and labels[1, 7, 7] == 1  # hand edits survive
    assert labels[:2].sum() == 2 * 64 - 1  # all computed voxels but the erased one
    assert labels[2].sum() == 1  # never computed: untouched
    session.set_threshold(0.9, labels)  # nothing is lesion now, except the hand edits
    assert labels[:2].sum() == 1 and labels[1, 7, 7] == 1 and labels[2, 0, 0] == 1
    assert session.auto_mask[:2].sum() == 1  # it records the hand-set voxels as seen


def test_volume_results_grow_by_the_models_hysteresis_but_hand_erased_voxels_stay():
    session = SegmentationSession((4, 20, 20), min_lesion_voxels=5, grow_threshold=0.2)
    labels = np.zeros((4, 20, 20), np.uint8)
    prob = np.zeros((4, 20, 20), np.float32)
    prob[1:3, 3:12, 3:12] = 0.3  # the lesion's border, below the threshold
    prob[1:3, 5:10, 5:10] = 0.9  # its core
    prob[0:2, 15:19, 15:19] = 0.3  # low probability that touches no core: never added
    session.add_probabilities(prob, (slice(None),) * 3, labels)
    assert int(labels.sum()) == 2 * 9 * 9 and labels[0:2, 15:19, 15:19].sum() == 0
    labels[1, 3, 3] = 0  # erased by hand
    session.set_threshold(0.5, labels)
    assert labels[1, 3, 3] == 0 and int(labels.sum()) == 2 * 9 * 9 - 1
