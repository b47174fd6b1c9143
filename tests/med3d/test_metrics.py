"""Dice and HD95 against cases worked out by hand."""

import math

import numpy as np
import pytest

from septet.errors import InputError
from septet.med3d.metrics import dice_per_class, dice_score, hausdorff95, surface_distances


def volume(*points, shape=(10, 10, 10)):
    mask = np.zeros(shape, bool)
    for p in points:
        mask[p] = True
    return mask


def test_dice_by_hand():
    prediction = volume((0, 0, 0), (0, 0, 1))
    target = volume((0, 0, 1), (0, 0, 2), (0, 0, 3))
    assert dice_score(prediction, target) == pytest.approx(2 * 1 / (2 + 3))  # 0.4
    assert dice_score(target, target) == 1.0
    assert dice_score(prediction, volume((5, 5, 5))) == 0.0
    assert math.isnan(dice_score(volume(), volume()))


def test_dice_per_class_by_hand():
    target = np.zeros((4, 4, 4), int)
    target[0, 0, :2] = 1  # class 1: two voxels
    target[3, 3, :] = 2  # class 2: four voxels
    prediction = target.copy()
    prediction[0, 0, 1] = 0  # lose one voxel of class 1 -> 2·1/(1+2)
    prediction[3, 3, 0] = 1  # one class-2 voxel called class 1 -> class 1: 2·1/(2+2)
    scores = dice_per_class(prediction, target, num_classes=4)
    assert scores[0] == pytest.approx(2 * 1 / (2 + 2))
    assert scores[1] == pytest.approx(2 * 3 / (3 + 4))
    assert math.isnan(scores[2])  # class 3 in neither
    assert dice_per_class(prediction, target, 3, include_background=True)[0] == pytest.approx(
        2 * 58 / (59 + 58)  # background: 58 voxels, plus the lost class-1 voxel predicted
    )


def test_hd95_of_single_voxels_uses_the_spacing():
    a, b = volume((1, 1, 1)), volume((2, 3, 1))
    # one step along x (3 mm) and two along y (1 mm each): sqrt(3² + 2²)
    assert hausdorff95(a, b, spacing=(3.0, 1.0, 1.0)) == pytest.approx(math.sqrt(13))
    assert hausdorff95(a, a, spacing=(3.0, 1.0, 1.0)) == 0.0


def test_hd95_ignores_the_worst_five_percent():
    # A line of 10 voxels, and the same line plus one stray voxel 7 voxels away (2 mm each).
    line = [(0, 0, z) for z in range(10)]
    a = volume(*line, shape=(10, 10, 10))
    b = volume(*line, (7, 0, 0), shape=(10, 10, 10))
    forward, backward = surface_distances(a, b, spacing=(2.0, 1.0, 1.0))
    assert sorted(forward) == [0.0] * 10
    assert sorted(backward) == [0.0] * 10 + [14.0]
    # 21 distances, 20 of them 0: the 95th percentile (index 19 of 0…20) is 0, the maximum 14.
    assert hausdorff95(a, b, spacing=(2.0, 1.0, 1.0)) == 0.0


def test_hd95_of_shifted_cubes_equals_brute_force():
    a = np.zeros((12, 12, 12), bool)
    a[2:8, 2:8, 2:8] = True
    b = np.roll(a, 2, axis=0)  # shifted by two voxels of 1.5 mm along x
    spacing = np.array([1.5, 1.0, 1.0])

    def shell(mask):  # voxels with a face neighbour outside the mask
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for axis in range(3):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis)[1:-1, 1:-1, 1:-1]
        return np.argwhere(mask & ~inner) * spacing

    sa, sb = shell(a), shell(b)
    pairwise = np.linalg.norm(sa[:, None] - sb[None], axis=-1)
    expected = np.percentile(np.concatenate([pairwise.min(1), pairwise.min(0)]), 95)
    assert hausdorff95(a, b, spacing=tuple(spacing)) == pytest.approx(expected)
    assert expected == pytest.approx(3.0)  # the far faces: two voxels of 1.5 mm


def test_hd95_empty_cases():
    assert math.isnan(hausdorff95(volume(), volume()))
    assert math.isinf(hausdorff95(volume((1, 1, 1)), volume()))
    with pytest.raises(InputError, match="same shape"):
        hausdorff95(volume(shape=(3, 3, 3)), volume())
