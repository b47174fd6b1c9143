"""Scores for object removal against ground truth: mask J (region IoU) and F (boundary
F-measure, as in the DAVIS benchmark), PSNR and SSIM inside a region, and temporal flicker
(the flow-warping error between consecutive output frames)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mask_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Region similarity J: |A ∩ B| / |A ∪ B| (1.0 when both are empty)."""
    predicted, truth = predicted.astype(bool), truth.astype(bool)
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def _boundary(mask: np.ndarray) -> np.ndarray:
    import cv2

    mask = mask.astype(np.uint8)
    return (mask - cv2.erode(mask, np.ones((3, 3), np.uint8))) > 0


def boundary_f(predicted: np.ndarray, truth: np.ndarray, tolerance: float = 0.008) -> float:
    """Contour accuracy F: the F-measure of boundary pixels matched within ``tolerance`` times
    the image diagonal (DAVIS uses 0.008)."""
    import cv2

    bp, bt = _boundary(predicted), _boundary(truth)
    if not bp.any() and not bt.any():
        return 1.0
    if not bp.any() or not bt.any():
        return 0.0
    radius = max(1, round(tolerance * np.hypot(*truth.shape)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    near_t = cv2.dilate(bt.astype(np.uint8), disc) > 0
    near_p = cv2.dilate(bp.astype(np.uint8), disc) > 0
    precision = (bp & near_t).sum() / bp.sum()
    recall = (bt & near_p).sum() / bt.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def psnr(output: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB over ``region`` (all pixels when None); 100 if equal."""
    a, b = output.astype(np.float64), truth.astype(np.float64)
    if region is not None:
        a, b = a[region], b[region]
    if a.size == 0:
        return float("nan")
    mse = np.mean((a - b) ** 2)
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(output: np.ndarray, truth: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean structural similarity (Wang et al. 2004; Gaussian window, sigma 1.5) of the grey
    images over ``region``: the SSIM map is computed on the whole frame, then averaged."""
    import cv2

    def grey(image):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        return image.astype(np.float64)

    x, y = grey(output), grey(truth)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(image):
        return cv2.GaussianBlur(image, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    values = ssim_map[region] if region is not None else ssim_map
    return float(values.mean()) if values.size else float("nan")


def warping_error(
    outputs: Sequence[np.ndarray],
    references: Sequence[np.ndarray],
    regions: Sequence[np.ndarray],
) -> float:
    """Temporal flicker: the mean absolute difference (0-255) between each output frame and the
    next output frame warped back onto it, inside ``regions[t]``. The flow is measured on the
    ``references`` (the clean plate), where it is right, and pixels whose forward-backward flow
    disagrees (occlusions) are left out."""
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    total, count = 0.0, 0
    for t in range(len(outputs) - 1):
        a = cv2.cvtColor(references[t], cv2.COLOR_BGR2GRAY)
        b = cv2.cvtColor(references[t + 1], cv2.COLOR_BGR2GRAY)
        forward, backward = dis.calc(a, b, None), dis.calc(b, a, None)
        height, width = a.shape
        grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height))
        map_x = grid_x + forward[..., 0]
        map_y = grid_y.astype(np.float32) + forward[..., 1]
        back = cv2.remap(backward, map_x, map_y, cv2.INTER_LINEAR)
        consistent = (
            np.sum((forward + back) ** 2, axis=2)
            < 0.01 * (np.sum(forward**2, axis=2) + np.sum(back**2, axis=2)) + 0.5
        )
        warped = cv2.remap(outputs[t + 1], map_x, map_y, cv2.INTER_LINEAR)
        keep = regions[t] & consistent
        if keep.any():
            diff = np.abs(outputs[t].astype(np.float64) - warped.astype(np.float64))[keep]
            total += diff.sum()
            count += diff.size
    return total / count if count else float("nan")
