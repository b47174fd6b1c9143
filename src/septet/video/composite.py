"""Ground truth for video object removal: a real textured object, cut from a real photo, moved
along a known path over real background frames. The exact object mask and the clean background
(the "clean plate") are known for every frame, so tracking, masks and inpainting can be scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from septet.video.box import Box, box_from_mask


@dataclass
class CompositeFrame:
    """One frame of a composite: what the camera saw, the object's mask and box, the clean plate."""

    frame: np.ndarray  # BGR uint8, the object pasted over the background
    mask: np.ndarray  # bool, True on the object's pixels
    box: Box  # the tight box around the mask
    clean: np.ndarray  # BGR uint8, the background alone


def blob_mask(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An irregular, star-convex silhouette filling most of a ``height`` x ``width`` box: an
    ellipse whose radius wobbles with a few random harmonics (a shape a box fits loosely)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dy, dx = (ys - (height - 1) / 2) / (height / 2), (xs - (width - 1) / 2) / (width / 2)
    angle, radius = np.arctan2(dy, dx), np.hypot(dx, dy)
    wobble = np.ones_like(angle)
    for k in (2, 3, 5):
        wobble += rng.uniform(0.04, 0.1) * np.cos(k * angle + rng.uniform(0, 2 * np.pi))
    return radius <= 0.97 * wobble / wobble.max()


def object_from_photo(
    photo: str = "chelsea", height: int = 48, width: int = 64, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A BGR object texture and its bool mask: the middle of a scikit-image sample photo
    (``chelsea``, ``coffee``, ``astronaut``, ...) resized to the box and cut to a blob."""
    import cv2
    import skimage.data

    rgb = getattr(skimage.data, photo)()
    h, w = rgb.shape[:2]
    # The central 60% of the photo holds its subject (the cat's face, the cup, the astronaut).
    crop = rgb[int(0.2 * h) : int(0.8 * h), int(0.2 * w) : int(0.8 * w)]
    texture = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(texture, cv2.COLOR_RGB2BGR), blob_mask(height, width, seed)


def photo_pan(
    photo: str = "astronaut",
    height: int = 120,
    width: int = 160,
    frames: int = 24,
    pan: tuple[float, float] = (1.0, 0.5),
) -> Iterator[np.ndarray]:
    """Background frames: a window sliding over a scikit-image photo, ``pan`` pixels per frame
    (a camera panning over a real scene; (0, 0) is a static camera)."""
    import cv2
    import skimage.data

    image = cv2.cvtColor(getattr(skimage.data, photo)(), cv2.COLOR_RGB2BGR)
    scale = max(
        (height + abs(pan[1]) * frames + 2) / image.shape[0],
        (width + abs(pan[0]) * frames + 2) / image.shape[1],
    )
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x0 = 0.0 if pan[0] >= 0 else image.shape[1] - width - 1.0
    y0 = 0.0 if pan[1] >= 0 else image.shape[0] - height - 1.0
    for t in range(frames):
        shift = np.float32([[1, 0, -(x0 + pan[0] * t)], [0, 1, -(y0 + pan[1] * t)]])
        yield cv2.warpAffine(image, shift, (width, height), flags=cv2.INTER_LINEAR)


def linear_path(
    start: tuple[float, float], end: tuple[float, float], frames: int, wobble: float = 0.0
) -> list[tuple[int, int]]:
    """Top-left corners of the object from ``start`` to ``end`` over ``frames`` frames, with an
    optional sideways sine wobble of ``wobble`` pixels."""
    points = []
    for t in range(frames):
        a = t / max(1, frames - 1)
        x = start[0] + a * (end[0] - start[0])
        y = start[1] + a * (end[1] - start[1]) + wobble * np.sin(2 * np.pi * a)
        points.append((round(x), round(y)))
    return points


def composite(
    backgrounds: Iterable[np.ndarray],
    texture: np.ndarray,
    mask: np.ndarray,
    path: list[tuple[int, int]],
) -> Iterator[CompositeFrame]:
    """Paste ``texture`` (cut by ``mask``) over each background at the path's top-left corner;
    parts that leave the frame are cut off. Yields one CompositeFrame per background frame."""
    oh, ow = mask.shape
    for (x, y), background in zip(path, backgrounds, strict=False):
        clean = np.ascontiguousarray(background)
        height, width = clean.shape[:2]
        frame = clean.copy()
        full_mask = np.zeros((height, width), bool)
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + ow), min(height, y + oh)
        if x1 > x0 and y1 > y0:
            part = mask[y0 - y : y1 - y, x0 - x : x1 - x]
            full_mask[y0:y1, x0:x1] = part
            frame[y0:y1, x0:x1][part] = texture[y0 - y : y1 - y, x0 - x : x1 - x][part]
        box = box_from_mask(full_mask) or Box(float(x), float(y), 0.0, 0.0)
        yield CompositeFrame(frame, full_mask, box, clean)
