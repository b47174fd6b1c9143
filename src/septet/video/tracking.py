"""Tracking the user's box through a clip: OpenCV's CSRT correlation-filter tracker, with
re-detection by template matching when it loses the object, run forward from the frame where the
box was drawn and backward from it to the start.

Frames are tracked at a working size (long side at most ``max_side``) for speed; boxes come back
in full-frame pixels.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from septet.video.box import Box


@runtime_checkable
class Tracker(Protocol):
    """Follows one object: ``init`` on a frame and box, then ``update`` per following frame,
    returning the new box or None when the object is lost."""

    def init(self, frame: np.ndarray, box: Box) -> None: ...

    def update(self, frame: np.ndarray) -> Box | None: ...


class CSRTTracker:
    """CSRT (discriminative correlation filter with channel and spatial reliability) with loss
    detection and re-detection.

    CSRT can lock onto background after a sudden move and still report success, so a box also
    counts as lost when the colours of its inner part (the middle 60%, mostly object) no longer
    correlate with the object's (hue-saturation histograms, below ``lost_threshold``). Then the
    object's inner templates (from the first frame and the last confident one) are searched over
    the whole frame at a few scales, and CSRT restarts on a match whose normalised correlation
    beats ``redetect_threshold``."""

    INNER = -0.2  # Box.expanded factor from the box to its inner part

    def __init__(
        self,
        redetect_threshold: float = 0.6,
        lost_threshold: float = 0.5,
        template_size: int = 200,
    ):
        self.template_size = template_size
        self.redetect_threshold = redetect_threshold
        self.lost_threshold = lost_threshold
        self._tracker = None
        self._templates: list[np.ndarray] = []
        self._histogram: np.ndarray | None = None

    def _start(self, frame: np.ndarray, box: Box) -> None:
        import cv2

        params = cv2.TrackerCSRT_Params()
        # 17 scales instead of 33: as accurate on our composites, and the box does not shrink
        # onto the object's textured core as the default's scale search tends to.
        params.number_of_scales = 17
        # The object's padded region is resampled to about this many pixels squared: CSRT's
        # cost grows with it, whatever the frame size.
        params.template_size = float(self.template_size)
        self._tracker = cv2.TrackerCSRT_create(params)
        self._tracker.init(frame, box.as_ints())

    def init(self, frame: np.ndarray, box: Box) -> None:
        self._start(frame, box)
        inner = _crop(frame, box.expanded(self.INNER))
        self._templates = [inner]
        self._histogram = _colour_histogram(inner)

    def update(self, frame: np.ndarray) -> Box | None:
        ok, rect = self._tracker.update(frame)
        height, width = frame.shape[:2]
        if ok:
            box = Box(*map(float, rect))
            inner = _crop(frame, box.expanded(self.INNER))
            if box.clipped(width, height).area > 0.25 * box.area and self._looks_like_object(inner):
                self._templates[1:] = [inner]
                return box
        found = self._redetect(frame)
        if found is not None:
            self._start(frame, found)
        return found

    def _looks_like_object(self, inner: np.ndarray) -> bool:
        import cv2

        if inner.shape[0] < 2 or inner.shape[1] < 2:
            return False
        score = cv2.compareHist(self._histogram, _colour_histogram(inner), cv2.HISTCMP_CORREL)
        return score >= self.lost_threshold

    def _redetect(self, frame: np.ndarray) -> Box | None:
        import cv2

        best_score, best_box = -1.0, None
        for template in self._templates:
            for scale in (0.8, 1.0, 1.25):
                t = cv2.resize(template, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                th, tw = t.shape[:2]
                if th >= frame.shape[0] or tw >= frame.shape[1] or th < 4 or tw < 4:
                    continue
                scores = cv2.matchTemplate(frame, t, cv2.TM_CCOEFF_NORMED)
                _, score, _, (x, y) = cv2.minMaxLoc(scores)
                if score > best_score:
                    # From the inner part back to the whole box.
                    w, h = tw / (1 + 2 * self.INNER), th / (1 + 2 * self.INNER)
                    box = Box(x + self.INNER * w, y + self.INNER * h, w, h)
                    best_score, best_box = score, box
        if best_score < self.redetect_threshold or best_box is None:
            return None
        if not self._looks_like_object(_crop(frame, best_box.expanded(self.INNER))):
            return None
        return best_box


def _colour_histogram(patch: np.ndarray) -> np.ndarray:
    import cv2

    hsv = cv2.cvtColor(patch, cv2.COLOR_BGR2HSV)
    histogram = cv2.calcHist([hsv], [0, 1], None, [16, 16], [0, 180, 0, 256])
    return cv2.normalize(histogram, histogram).flatten()


def _crop(frame: np.ndarray, box: Box) -> np.ndarray:
    rows, cols = box.slices(frame.shape[1], frame.shape[0])
    return frame[rows, cols].copy()


def working_scale(width: int, height: int, max_side: int) -> float:
    """The resize factor that brings the long side down to ``max_side`` (never enlarges)."""
    return min(1.0, max_side / max(width, height))


def track_box(
    frames: Iterable[np.ndarray],
    box: Box,
    start: int = 0,
    *,
    tracker_factory=CSRTTracker,
    max_side: int = 640,
    frame_count: int | None = None,
) -> list[Box]:
    """The object's box on every frame of ``frames``, given ``box`` on frame ``start``.

    Frames up to ``start`` are kept at working size in a temporary file on disk (not in memory)
    and tracked backward once the start frame is reached. A lost object keeps its last box.
    """
    from septet.common import progress_bar
    from septet.errors import InputError

    boxes: list[Box] = []
    scale = 1.0
    forward: Tracker | None = None
    with tempfile.TemporaryDirectory(prefix="septet-track-") as temp_dir:
        cached: np.memmap | None = None
        with progress_bar(frame_count, "tracking") as bar:
            for index, frame in enumerate(frames):
                if index == 0:
                    scale = working_scale(frame.shape[1], frame.shape[0], max_side)
                small = resize_by(frame, scale)
                if index <= start and start > 0:
                    if cached is None:
                        path = os.path.join(temp_dir, "frames.u8")
                        shape = (start + 1, *small.shape)
                        cached = np.memmap(path, dtype=np.uint8, mode="w+", shape=shape)
                    cached[index] = small
                if index < start:
                    boxes.append(box)  # a placeholder until the backward pass
                elif index == start:
                    forward = tracker_factory()
                    forward.init(small, box.scaled(scale))
                    boxes.append(box)
                else:
                    found = forward.update(small)
                    boxes.append(found.scaled(1 / scale) if found is not None else boxes[-1])
                bar.advance()
        if start >= len(boxes):
            raise InputError(
                f"--frame {start} is past the clip's end: it has {len(boxes)} frames "
                f"(numbered 0 to {max(0, len(boxes) - 1)})"
            )
        if start > 0:
            backward = tracker_factory()
            backward.init(np.asarray(cached[start]), box.scaled(scale))
            for index in range(start - 1, -1, -1):
                found = backward.update(np.asarray(cached[index]))
                boxes[index] = found.scaled(1 / scale) if found is not None else boxes[index + 1]
        del cached
    return boxes


def resize_by(frame: np.ndarray, scale: float) -> np.ndarray:
    """``frame`` resized by ``scale`` (area averaging); the frame itself when scale is 1."""
    import cv2

    if scale == 1.0:
        return frame
    return cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
