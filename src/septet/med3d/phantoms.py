"""Synthetic phantoms: a noisy "organ" with one or two bright "lesions", the ground truth
known exactly. For tests and the demo, never for claims about real anatomy."""

from __future__ import annotations

import numpy as np


def make_phantom(
    shape: tuple[int, int, int] = (32, 32, 32),
    *,
    seed: int = 0,
    num_lesions: int = 1,
    radius: tuple[float, float] = (5.0, 8.0),
    noise: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """(image float32 (X, Y, Z), label int64 (X, Y, Z)): a smooth ellipsoidal body of
    intensity ≈1 with ``num_lesions`` ellipsoids of intensity ≈2 (labels 1, 2, …)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij"))
    centre = np.array(shape, dtype=np.float32)[:, None, None, None] / 2
    body = (((grid - centre) / (np.array(shape)[:, None, None, None] * 0.45)) ** 2).sum(0) <= 1
    image = body.astype(np.float32)
    label = np.zeros(shape, dtype=np.int64)
    for lesion in range(1, num_lesions + 1):
        radii = rng.uniform(*radius, size=3).astype(np.float32)
        margin = np.minimum(radii + 1, np.array(shape) / 2)  # keep the lesion inside the volume
        where = np.array([rng.uniform(m, n - m) for m, n in zip(margin, shape, strict=True)])
        inside = (((grid - where[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0)
        mask = inside <= 1
        label[mask] = lesion
        image[mask] = 1.0 + lesion
    image = image + rng.normal(0.0, noise, size=shape).astype(np.float32)
    return image.astype(np.float32), label
