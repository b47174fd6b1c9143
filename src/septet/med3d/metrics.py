"""Segmentation metrics in physical units: per-class Dice and the 95th-percentile Hausdorff
distance (HD95) in millimetres.

Conventions (stated because tools differ): a class absent from both masks has Dice and HD95
``nan`` (nothing to score; averages skip it); a class in only one of them has Dice 0 and HD95
``inf``. HD95 follows medpy: surface voxels of each mask, the distance of each to the other
mask's surface, and the 95th percentile of both sets of distances together.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from septet.errors import InputError


def dice_score(prediction: np.ndarray, target: np.ndarray) -> float:
    """Dice of two binary masks: 2|A∩B| / (|A| + |B|); nan when both are empty."""
    a, b = np.asarray(prediction, bool), np.asarray(target, bool)
    _same_shape(a, b)
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def dice_per_class(
    prediction: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    *,
    include_background: bool = False,
) -> list[float]:
    """Dice for each class of two label maps (classes 1…num_classes-1 unless
    ``include_background``)."""
    first = 0 if include_background else 1
    return [dice_score(prediction == c, target == c) for c in range(first, num_classes)]


def surface(mask: np.ndarray) -> np.ndarray:
    """The voxels of ``mask`` that touch the outside (6-connectivity)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    eroded = ndimage.binary_erosion(
        mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0
    )
    return mask & ~eroded


def surface_distances(
    prediction: np.ndarray, target: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``prediction`` to ``target``'s surface, and
    the other way round."""
    from scipy import ndimage

    a, b = np.asarray(prediction, bool), np.asarray(target, bool)
    _same_shape(a, b)
    if len(spacing) != a.ndim:
        raise InputError(f"spacing {tuple(spacing)} must give one size per axis of {a.shape}")
    surface_a, surface_b = surface(a), surface(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
    return to_b[surface_a], to_a[surface_b]


def hausdorff95(
    prediction: np.ndarray, target: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> float:
    """The 95th percentile of the symmetric surface distances, in the units of ``spacing``."""
    a, b = np.asarray(prediction, bool), np.asarray(target, bool)
    _same_shape(a, b)
    if not a.any() and not b.any():
        return float("nan")
    if not a.any() or not b.any():
        return float("inf")
    forward, backward = surface_distances(a, b, spacing)
    return float(np.percentile(np.concatenate([forward, backward]), 95))


def hausdorff95_per_class(
    prediction: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> list[float]:
    """HD95 for each foreground class 1…num_classes-1 of two label maps."""
    return [hausdorff95(prediction == c, target == c, spacing) for c in range(1, num_classes)]


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise InputError(f"prediction {a.shape} and target {b.shape} must have the same shape")
