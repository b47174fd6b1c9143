"""An axis-aligned box in pixel coordinates: parsing ``x,y,w,h``, checks against a frame, IoU."""

from __future__ import annotations

from dataclasses import dataclass

from septet.errors import InputError


@dataclass(frozen=True)
class Box:
    """A box with its top-left corner at (x, y), ``w`` pixels wide and ``h`` pixels tall."""

    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        return max(0.0, self.w) * max(0.0, self.h)

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    def as_ints(self) -> tuple[int, int, int, int]:
        """The box rounded to whole pixels, as OpenCV wants it."""
        x0, y0 = round(self.x), round(self.y)
        x1, y1 = round(self.x + self.w), round(self.y + self.h)
        return x0, y0, max(1, x1 - x0), max(1, y1 - y0)

    def scaled(self, factor: float) -> Box:
        """The same box in an image resized by ``factor``."""
        return Box(self.x * factor, self.y * factor, self.w * factor, self.h * factor)

    def expanded(self, margin: float) -> Box:
        """The box grown by ``margin`` times its size on each side (0.25 adds a quarter)."""
        dx, dy = self.w * margin, self.h * margin
        return Box(self.x - dx, self.y - dy, self.w + 2 * dx, self.h + 2 * dy)

    def clipped(self, width: int, height: int) -> Box:
        """The part of the box inside a ``width`` x ``height`` frame (may be empty)."""
        x0, y0 = max(0.0, self.x), max(0.0, self.y)
        x1, y1 = min(float(width), self.x + self.w), min(float(height), self.y + self.h)
        return Box(x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))

    def slices(self, width: int, height: int) -> tuple[slice, slice]:
        """Row and column slices of the (clipped, whole-pixel) box, for indexing a frame."""
        x, y, w, h = self.clipped(width, height).as_ints()
        x, y = min(x, width - 1), min(y, height - 1)
        return slice(y, min(height, y + h)), slice(x, min(width, x + w))

    def iou(self, other: Box) -> float:
        """Intersection over union of two boxes (0 when they do not touch)."""
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1 = min(self.x + self.w, other.x + other.w)
        y1 = min(self.y + self.h, other.y + other.h)
        inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


def parse_box(text: str) -> Box:
    """``"x,y,w,h"`` (pixels, whole or fractional) as a Box; a clear error for anything else."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise InputError(
            f"box {text!r} is not four numbers; give it as x,y,w,h in pixels, "
            "e.g. --box 40,30,64,48"
        )
    box = Box(*values)
    if box.w <= 0 or box.h <= 0:
        raise InputError(f"box {text!r} has a width or height <= 0; w and h must be positive")
    return box


def check_box_in_frame(box: Box, width: int, height: int) -> Box:
    """The box, if it lies inside the frame (a sliver outside is clipped); else an InputError."""
    inside = box.clipped(width, height)
    if inside.w < 2 or inside.h < 2 or inside.area < 0.5 * box.area:
        raise InputError(
            f"box x={box.x:g},y={box.y:g},w={box.w:g},h={box.h:g} lies outside the "
            f"{width}x{height} frame; choose a box inside it (`septet video frame` writes a "
            "frame with a pixel grid to help)"
        )
    return inside


def box_from_mask(mask) -> Box | None:
    """The tightest box around the nonzero pixels of ``mask``; None when it is empty."""
    import numpy as np

    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return Box(
        float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)
    )
