"""Post-processing: each class keeps only its largest connected component."""

import numpy as np

from septet.med3d.postprocessing import keep_largest_component, largest_component


def test_largest_component_keeps_the_biggest_blob_and_drops_specks():
    mask = np.zeros((12, 12, 12), bool)
    mask[1:6, 1:6, 1:6] = True  # 125 voxels
    mask[9, 9, 9] = True  # a speck far away
    mask[8:11, 1:3, 1:3] = True  # 12 voxels
    kept = largest_component(mask)
    assert kept.sum() == 125
    assert kept[1:6, 1:6, 1:6].all()
    assert not kept[9, 9, 9] and not kept[8:11, 1:3, 1:3].any()


def test_diagonal_neighbours_belong_to_one_component():
    mask = np.zeros((5, 5, 5), bool)
    mask[1, 1, 1] = mask[2, 2, 2] = mask[3, 3, 3] = True  # touching by corners only
    mask[0, 4, 0] = True
    assert largest_component(mask).sum() == 3


def test_empty_and_single_component_masks_are_unchanged():
    empty = np.zeros((4, 4, 4), bool)
    assert not largest_component(empty).any()
    one = np.zeros((4, 4, 4), bool)
    one[1:3, 1:3, 1:3] = True
    assert np.array_equal(largest_component(one), one)


def test_keep_largest_component_works_per_class_and_zeroes_the_rest():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:4, 0:4, 0:4] = 1  # class 1: big
    labels[8, 8, 8] = 1  # class 1: speck
    labels[6:8, 0:2, 0:2] = 2  # class 2: small but its only component
    out = keep_largest_component(labels)
    assert (out == 1).sum() == 64 and out[8, 8, 8] == 0
    assert (out == 2).sum() == 8
    only_two = keep_largest_component(labels, classes=[2])
    assert only_two[8, 8, 8] == 1  # class 1 untouched when not asked for
