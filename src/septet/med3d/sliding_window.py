"""Sliding-window inference: a network trained on patches predicts a whole volume.

Windows of ``roi_size`` step by ``roi_size × (1 - overlap)``; the last window on each axis is
moved back to end at the border, so every voxel is covered and no window hangs outside. Each
window's output is weighted (a Gaussian centred on the window, σ = size/8 as in nnU-Net, which
trusts the centre where the network saw the most context; or 1 everywhere for a plain mean)
and the weighted sum is divided by the summed weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product

import torch
import torch.nn.functional as F

from septet.errors import ConfigError

BLENDS = ("gaussian", "mean")


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start indices along one axis (``size >= window``)."""
    if size <= window:
        return [0]
    stride = max(1, int(window * (1.0 - overlap)))
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def importance_map(roi_size: Sequence[int], blend: str, device=None) -> torch.Tensor:
    """The per-voxel weight of one window's output."""
    if blend == "mean":
        return torch.ones(tuple(roi_size), device=device)
    if blend != "gaussian":
        raise ConfigError(f"blend {blend!r} is unknown; use one of {', '.join(BLENDS)}")
    axes = []
    for n in roi_size:
        centre, sigma = (n - 1) / 2.0, n / 8.0
        coords = torch.arange(n, dtype=torch.float32, device=device)
        axes.append(torch.exp(-0.5 * ((coords - centre) / sigma) ** 2))
    weight = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weight = weight / weight.max()
    return weight.clamp_min(1e-3)  # the corners still count a little: no division by zero


@torch.no_grad()
def sliding_window_inference(
    volume: torch.Tensor,
    roi_size: Sequence[int],
    predictor: Callable[[torch.Tensor], torch.Tensor],
    *,
    overlap: float = 0.5,
    blend: str = "gaussian",
    batch_size: int = 4,
) -> torch.Tensor:
    """Run ``predictor`` over (N, C, D, H, W) ``volume`` window by window and blend the
    outputs (N, K, D, H, W); a volume smaller than a window is padded, then cropped back."""
    if volume.ndim != 5:
        raise ConfigError(f"volume must be (N, C, D, H, W), got shape {tuple(volume.shape)}")
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap {overlap} must be within [0, 1)")
    roi = tuple(int(r) for r in roi_size)
    spatial = tuple(volume.shape[2:])
    pads = [max(0, r - s) for r, s in zip(roi, spatial, strict=True)]
    if any(pads):
        # F.pad lists the last axis first.
        padding = []
        for p in reversed(pads):
            padding += [p // 2, p - p // 2]
        volume = F.pad(volume, padding, mode="replicate")
    padded = tuple(volume.shape[2:])
    weight = importance_map(roi, blend, volume.device)
    starts = list(
        product(*(window_starts(s, r, overlap) for s, r in zip(padded, roi, strict=True)))
    )
    output = None
    weights = torch.zeros(padded, device=volume.device)
    for first in range(0, len(starts), batch_size):
        group = starts[first : first + batch_size]
        windows = [
            tuple(slice(a, a + r) for a, r in zip(start, roi, strict=True)) for start in group
        ]
        batch = torch.cat([volume[(slice(None), slice(None), *w)] for w in windows])
        result = predictor(batch).float()
        if output is None:
            output = torch.zeros((volume.shape[0], result.shape[1], *padded), device=volume.device)
        for i, w in enumerate(windows):
            part = result[i * volume.shape[0] : (i + 1) * volume.shape[0]]
            output[(slice(None), slice(None), *w)] += part * weight
            weights[w] += weight
    output = output / weights
    if any(pads):
        crop = tuple(slice(p // 2, p // 2 + s) for p, s in zip(pads, spatial, strict=True))
        output = output[(slice(None), slice(None), *crop)]
    return output
