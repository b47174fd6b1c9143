"""The small ground-truth clip of the video tests, made here: a cat's face cut from a real photo
(scikit-image's ``chelsea``) glides over a panning window on another real photo (``astronaut``).
The object's mask, box and the clean background of every frame are known exactly."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from septet.video.composite import (
    CompositeFrame,
    composite,
    linear_path,
    object_from_photo,
    photo_pan,
)
from septet.video.video_io import VideoWriter

WIDTH, HEIGHT, FRAMES, FPS = 192, 144, 24, Fraction(25)


@dataclass
class Clip:
    path: Path
    truth: list[CompositeFrame]


def make_clip(path: Path, frames: int = FRAMES, pan=(1.0, 0.5), jump_at: int | None = None):
    """Write a composite clip (lossless FFV1 in AVI) and return it with its ground truth.
    ``jump_at``: from that frame on, the object is 80 pixels further right (a sudden jump)."""
    texture, shape = object_from_photo("chelsea", 36, 46)
    route = linear_path((8, 16), (130, 84), frames, wobble=8)
    if jump_at is not None:
        route = [(10 + (80 if t >= jump_at else 0), 50) for t in range(frames)]
    truth = list(
        composite(photo_pan("astronaut", HEIGHT, WIDTH, frames, pan), texture, shape, route)
    )
    with VideoWriter(path, WIDTH, HEIGHT, FPS) as writer:
        for item in truth:
            writer.write(item.frame)
    return Clip(path, truth)
