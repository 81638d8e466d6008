"""Correction helpers on masks with known answers."""

import numpy as np
import pytest

from napari_unet.core import editing


def test_remove_small_components_by_voxels_and_ml():
    mask = np.zeros((10, 20, 20), np.uint8)
    mask[2:5, 2:5, 2:5] = 1  # 27 voxels
    mask[8, 15, 15] = 1  # 1 voxel
    out = editing.remove_small_components(mask, 5)
    assert out.sum() == 27 and out[8, 15, 15] == 0
    assert editing.min_voxels_for_ml(0.01, (1.0, 1.0, 2.0)) == 5
    assert editing.remove_small_components(mask, 28).sum() == 0


def test_fill_holes_2d_and_3d():
    ring = np.zeros((9, 9), np.uint8)
    ring[2:7, 2:7] = 1
    ring[4, 4] = 0
    assert editing.fill_holes(ring)[4, 4] == 1
    shell = np.zeros((7, 7, 7), np.uint8)
    shell[1:6, 1:6, 1:6] = 1
    shell[3, 3, 3] = 0
    assert editing.fill_holes(shell).sum() == 125


def test_grow_and_shrink_one_voxel():
    dot = np.zeros((7, 7), np.uint8)
    dot[3, 3] = 1
    grown = editing.grow(dot)
    assert grown.sum() == 5  # the 4-neighbourhood
    assert editing.shrink(grown).sum() == 1
    square = np.zeros((9, 9), np.uint8)
    square[2:7, 2:7] = 2
    assert editing.shrink(square).sum() == 2 * 9
    assert editing.grow(square, label=2).max() == 2


def test_copy_neighbour_slice():
    volume = np.zeros((5, 4, 4), np.uint8)
    volume[1, 1:3, 1:3] = 1
    np.testing.assert_array_equal(editing.copy_neighbour_slice(volume, 0, 2, -1), volume[1])
    with pytest.raises(ValueError, match="no slice 5"):
        editing.copy_neighbour_slice(volume, 0, 4, +1)


def test_shape_based_interpolation_between_two_discs():
    z, y, x = np.mgrid[:11, :40, :40]
    volume = np.zeros((11, 40, 40), np.uint8)
    volume[0] = ((y[0] - 20) ** 2 + (x[0] - 16) ** 2) <= 16  # radius 4 at x=16
    volume[10] = ((y[0] - 20) ** 2 + (x[0] - 24) ** 2) <= 64  # radius 8 at x=24 (overlapping)
    out = editing.interpolate_slices(volume, 0, 0, 10)
    middle = out[5] > 0
    cy, cx = np.argwhere(middle).mean(axis=0)
    assert cx == pytest.approx(20, abs=1.0) and cy == pytest.approx(20, abs=0.5)
    area = middle.sum()
    assert np.pi * 5**2 * 0.8 < area < np.pi * 7**2 * 1.1  # radius between the two
    assert out[0].sum() == volume[0].sum() and out[10].sum() == volume[10].sum()
    assert editing.annotated_slices(out, 0) == list(range(11))
    with pytest.raises(ValueError, match="must both contain"):
        editing.interpolate_slices(volume, 0, 0, 5)


def test_lesion_table_and_slice_areas():
    mask = np.zeros((10, 10, 10), np.uint8)
    mask[1:3, 1:3, 1:3] = 1  # 8 voxels
    mask[6:9, 6:9, 6:9] = 1  # 27 voxels
    table = editing.lesion_table(mask, (2.0, 1.0, 1.0))
    assert [lesion.voxels for lesion in table] == [27, 8]
    assert table[0].volume_ml == pytest.approx(0.054)
    assert table[0].centroid == pytest.approx((7.0, 7.0, 7.0))
    areas = editing.slice_areas_mm2(mask, 0, (2.0, 1.0, 0.5))
    assert areas[7] == pytest.approx(9 * 0.5) and areas[0] == 0


def test_lesion_table_in_the_bounding_box_equals_labelling_the_whole_volume(rng):
    from scipy import ndimage

    mask = np.zeros((40, 50, 60), np.uint8)
    mask[12:30, 20:41, 7:52] = rng.random((18, 21, 45)) > 0.93  # many small components
    mask[12, 20, 7] = mask[29, 40, 51] = 1  # the corners of the box
    spacing = (1.5, 1.0, 0.8)
    table = editing.lesion_table(mask, spacing)
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    index = np.arange(1, count + 1)
    centroids = ndimage.center_of_mass(mask, labels, index)
    sizes = ndimage.sum_labels(mask, labels, index)
    assert count > 20 and len(table) == count
    by_label = {lesion.label: lesion for lesion in table}
    for i, n, centre in zip(index, sizes, centroids, strict=True):
        assert by_label[i].voxels == n  # same numbering as the whole volume
        assert by_label[i].centroid == pytest.approx(centre)
    assert editing.lesion_table(np.zeros_like(mask), spacing) == []
    assert editing.bounding_box(mask) == (slice(12, 30), slice(20, 41), slice(7, 52))


def test_remove_thin_components_by_axial_extent_in_mm():
    mask = np.zeros((20, 30, 30), np.uint8)
    mask[2:4, 5:15, 5:15] = 1  # two slices thick: a slice-wise false positive
    mask[8:16, 18:24, 18:24] = 1  # eight slices: a lesion
    out = editing.remove_thin_components(mask, 5.0, (1.0, 1.0, 1.0))
    assert not out[2:4].any() and out[8:16, 18:24, 18:24].all()
    # at 3 mm slices the thin blob spans 6 mm and stays
    assert editing.remove_thin_components(mask, 5.0, (3.0, 1.0, 1.0))[2:4].sum() == 200
    both = editing.model_postprocess(mask, min_voxels=250, min_extent_mm=0.0)
    assert both.sum() == 8 * 36  # the 200-voxel blob is below 250 voxels
    np.testing.assert_array_equal(editing.model_postprocess(mask[5], 10**6, 99.0), mask[5])


def test_grow_into_probability_extends_kept_components_and_adds_none():
    prob = np.zeros((6, 20, 20), dtype=np.float32)
    prob[1:5, 2:10, 2:10] = 0.3  # a lesion's low-probability border ...
    prob[2:4, 4:8, 4:8] = 0.9  # ... around its confident core
    prob[1:5, 14:18, 14:18] = 0.35  # a separate low blob that no kept core touches
    kept = (prob >= 0.5).astype(np.uint8)
    grown = editing.grow_into_probability(kept, prob, 0.25)
    assert grown.dtype == np.uint8
    assert int(grown.sum()) == 4 * 8 * 8  # the whole border, nothing of the far blob
    assert grown[1:5, 14:18, 14:18].sum() == 0
    assert np.array_equal(editing.grow_into_probability(kept, prob, 0.5), kept)
    # with no kept component nothing can grow, however low the threshold
    empty = np.zeros_like(kept)
    assert editing.grow_into_probability(empty, prob, 0.01).sum() == 0


def test_model_postprocess_grows_only_what_the_size_rule_kept():
    prob = np.zeros((8, 30, 30), dtype=np.float32)
    prob[1:7, 2:12, 2:12] = 0.3
    prob[2:6, 4:10, 4:10] = 0.8  # 144 confident voxels, kept
    prob[3, 20:22, 20:22] = 0.8  # 4 confident voxels, dropped by the size rule ...
    prob[2:5, 18:24, 18:24] = 0.3  # ... so its low border must not come back either
    mask = (prob >= 0.5).astype(np.uint8)
    out = editing.model_postprocess(mask, min_voxels=10, probability=prob, grow_threshold=0.2)
    assert int(out.sum()) == 6 * 10 * 10
    assert out[2:5, 18:24, 18:24].sum() == 0
    no_growth = editing.model_postprocess(mask, min_voxels=10)
    assert int(no_growth.sum()) == 144
    with pytest.raises(ValueError, match="same shape"):
        editing.grow_into_probability(mask, prob[:4], 0.2)


def test_grow_by_intensity_follows_dark_tissue_within_reach_only():
    image = np.full((12, 40, 40), 100.0, np.float32)
    image[4:8, 10:30, 10:30] = 20.0  # a dark lesion ...
    mask = np.zeros(image.shape, np.uint8)
    mask[4:8, 14:20, 14:20] = 1  # ... of which the network found a part
    image[4:8, 35:39, 35:39] = 20.0  # an unconnected dark region: never added
    grown = editing.grow_by_intensity(mask, image, max_mm=30.0)
    assert int(grown.sum()) == 4 * 20 * 20  # the whole dark lesion
    assert grown[4:8, 35:39, 35:39].sum() == 0
    near = editing.grow_by_intensity(mask, image, max_mm=2.0)  # reach limits growth
    assert mask.sum() < near.sum() < grown.sum()
    assert near[4:8, 10:12].sum() == 0
    # a brighter neighbour (above the midpoint cut) stops it
    image[4:8, 20:30, 10:30] = 70.0
    capped = editing.grow_by_intensity(mask, image, max_mm=30.0)
    assert capped[4:8, 20:30].sum() == 0 and capped[4:8, 10:20, 10:30].all()
