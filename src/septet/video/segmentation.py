"""Object masks inside the tracked box: GrabCut seeded by the box and by motion.

The motion cue compares the frame with a background estimate (the median of neighbouring frames
where the object was elsewhere, aligned to this frame by a homography that follows the camera).
Pixels that differ strongly are probably the object; pixels that match are probably background;
GrabCut's colour models then settle the uncertain ones. Without a usable background estimate (the
object never moves away) GrabCut runs from the box alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from septet.video.box import Box


@runtime_checkable
class Segmenter(Protocol):
    """Gives the object's mask in a crop around it: ``box`` is the object's box in crop pixels,
    ``background`` the estimated background of the crop (None when there is no estimate)."""

    def segment(self, crop: np.ndarray, box: Box, background: np.ndarray | None) -> np.ndarray: ...


class GrabCutSegmenter:
    """GrabCut on the crop (shrunk so its long side is at most ``max_side``), seeded by the box
    (outside = background) and by the difference to the background estimate."""

    def __init__(
        self,
        iterations: int = 2,
        max_side: int = 128,
        motion_low: float = 12.0,
        motion_high: float = 40.0,
        box_slack: float = 0.12,
    ):
        self.box_slack = box_slack
        self.iterations = iterations
        self.max_side = max_side
        self.motion_low = motion_low
        self.motion_high = motion_high

    def segment(self, crop: np.ndarray, box: Box, background: np.ndarray | None) -> np.ndarray:
        import cv2

        height, width = crop.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        rows, cols = box.scaled(scale).slices(sw, sh)
        seeds = np.full((sh, sw), cv2.GC_BGD, np.uint8)
        # A tracker's box is loose or a little tight; a ring around it may still be object.
        seeds[box.scaled(scale).expanded(self.box_slack).slices(sw, sh)] = cv2.GC_PR_BGD
        seeds[rows, cols] = cv2.GC_PR_FGD
        motion = None
        if background is not None:
            bg = cv2.resize(background, (sw, sh), interpolation=cv2.INTER_AREA)
            diff = cv2.absdiff(small, bg).max(axis=2)
            motion = cv2.GaussianBlur(diff, (3, 3), 0).astype(np.float32)
            inside = np.zeros((sh, sw), bool)
            inside[rows, cols] = True
            moving = inside & (motion > self.motion_low)
            ring = (seeds == cv2.GC_PR_BGD) & (motion > self.motion_high)
            # Trust the motion cue only when it marks a fair part of the box: an object that
            # stayed put, or a bad alignment, must not erase the object.
            share = moving.sum() / max(1, inside.sum())
            if 0.15 <= share <= 0.98:
                seeds[inside & ~moving] = cv2.GC_PR_BGD
                seeds[ring] = cv2.GC_PR_FGD
                sure = inside & (motion > self.motion_high)
                sure = cv2.erode(sure.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
                seeds[sure] = cv2.GC_FGD
        if (seeds == cv2.GC_BGD).all() or not (
            (seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD)
        ).any():
            result = seeds != cv2.GC_BGD
        else:
            bgd_model = np.zeros((1, 65), np.float64)
            fgd_model = np.zeros((1, 65), np.float64)
            try:
                cv2.grabCut(
                    small,
                    seeds,
                    None,
                    bgd_model,
                    fgd_model,
                    self.iterations,
                    cv2.GC_INIT_WITH_MASK,
                )
                result = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
            except cv2.error:  # a colour model with too few samples: fall back to the seeds
                result = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        result = clean_mask(result, box.scaled(scale))
        if scale != 1.0:
            up = cv2.resize(
                result.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR
            )
            result = up > 0.5
        return result


def clean_mask(mask: np.ndarray, box: Box) -> np.ndarray:
    """Keep the connected parts of ``mask`` that overlap the box's middle half (the object),
    drop specks, and fill holes; an empty result becomes the ellipse inscribed in the box."""
    import cv2
    from scipy import ndimage

    height, width = mask.shape
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    labels, count = ndimage.label(mask)
    if count:
        core = np.zeros_like(mask)
        core[box.expanded(-0.25).slices(width, height)] = True
        keep = np.unique(labels[core & mask])
        mask = np.isin(labels, keep[keep > 0])
    mask = ndimage.binary_fill_holes(mask)
    if mask.sum() < 0.05 * max(1.0, box.area):
        mask = np.zeros((height, width), np.uint8)
        cx, cy = box.center
        cv2.ellipse(
            mask,
            (round(cx), round(cy)),
            (max(1, round(box.w / 2)), max(1, round(box.h / 2))),
            0,
            0,
            360,
            1,
            -1,
        )
        mask = mask > 0
    return mask


def estimate_background(
    target: np.ndarray, neighbours: Sequence[np.ndarray], exclude: Sequence[Box], crop: Box
) -> np.ndarray | None:
    """The background of ``crop`` in ``target``: each neighbour frame is aligned to the target by
    a homography fitted to tracked corners outside the ``exclude`` boxes (the object's boxes),
    and the per-pixel median of the aligned crops is returned. None when nothing aligns."""
    import cv2

    height, width = target.shape[:2]
    target_gray = cv2.cvtColor(target, cv2.COLOR_BGR2GRAY)
    keep_out = np.full((height, width), 255, np.uint8)
    for box in exclude:
        keep_out[box.expanded(0.1).slices(width, height)] = 0
    corners = cv2.goodFeaturesToTrack(target_gray, 200, 0.01, 6, mask=keep_out)
    x, y, w, h = crop.as_ints()
    to_crop = np.array([[1, 0, -x], [0, 1, -y], [0, 0, 1]], np.float64)
    aligned = []
    for frame in neighbours:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        homography = np.eye(3)
        if corners is not None and len(corners) >= 8:
            moved, status, _ = cv2.calcOpticalFlowPyrLK(target_gray, gray, corners, None)
            good = status.ravel() == 1
            if good.sum() >= 8:
                found, _ = cv2.findHomography(moved[good], corners[good], cv2.RANSAC, 2.0)
                if found is not None:
                    homography = found
        aligned.append(
            cv2.warpPerspective(
                frame,
                to_crop @ homography,
                (w, h),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
        )
    if not aligned:
        return None
    return np.median(np.stack(aligned), axis=0).astype(np.uint8)
