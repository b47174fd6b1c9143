"""Filling the hole the object leaves: flow-guided video inpainting, and per-frame spatial
inpainting (OpenCV's Telea and Navier-Stokes) as the baseline it is measured against.

Flow-guided propagation, in the spirit of FGVC (Gao et al., ECCV 2020) without learned parts:
1. dense optical flow (DIS) between neighbouring frames, both directions, at a working size;
2. the flow inside each frame's hole is the object's motion, not the background's, so it is
   discarded and filled in from the flow around the hole (smooth completion);
3. each hole pixel follows the completed flow forward, frame by frame, until it lands where the
   background is visible; likewise backward. A forward-backward consistency check stops chains
   that the flow cannot be trusted for. The colours found both ways are blended, the nearer in
   time weighing more;
4. pixels no chain reached (never visible in the window) are filled spatially (Telea);
5. a feathered blend over the outer band of the hole hides the seam. Pixels outside the hole are
   never written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Inpainter(Protocol):
    """Fills ``holes[index]`` in ``frames[index]``; ``frames`` and ``holes`` hold at least the
    ``context`` frames on each side that exist. Must return a new frame whose pixels outside the
    hole equal the input's."""

    context: int

    def inpaint(
        self, frames: Mapping[int, np.ndarray], holes: Mapping[int, np.ndarray], index: int
    ) -> np.ndarray: ...


class SpatialInpainter:
    """Per-frame OpenCV inpainting (``method`` "telea" or "ns"): the baseline, no time used."""

    context = 0

    def __init__(self, method: str = "telea", radius: int = 5):
        if method not in ("telea", "ns"):
            from septet.errors import ConfigError

            raise ConfigError(f"spatial inpainting method {method!r}; use 'telea' or 'ns'")
        self.method, self.radius = method, radius

    def inpaint(
        self, frames: Mapping[int, np.ndarray], holes: Mapping[int, np.ndarray], index: int
    ) -> np.ndarray:
        return spatial_fill(frames[index], holes[index], self.method, self.radius)


def spatial_fill(frame: np.ndarray, hole: np.ndarray, method: str = "telea", radius: int = 5):
    """``frame`` with ``hole`` filled by cv2.inpaint, working on a crop around the hole."""
    import cv2

    out = frame.copy()
    ys, xs = np.nonzero(hole)
    if ys.size == 0:
        return out
    pad = 4 * radius + 4
    y0, y1 = max(0, ys.min() - pad), min(frame.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(frame.shape[1], xs.max() + pad + 1)
    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    crop_hole = hole[y0:y1, x0:x1]
    filled = cv2.inpaint(frame[y0:y1, x0:x1], crop_hole.astype(np.uint8), radius, flag)
    out[y0:y1, x0:x1][crop_hole] = filled[crop_hole]
    return out


SCENE_CUT = "scene cut"  # stands for the flow pair across a cut between two shots


def is_scene_cut(a: np.ndarray, b: np.ndarray) -> bool:
    """True when grey frames ``a`` and ``b`` belong to different shots: their 160x90
    thumbnails differ by more than 35 grey levels on average, or their grey histograms hardly
    correlate (a pan or a walking person changes neither that much)."""
    import cv2

    small_a = cv2.resize(a, (160, 90), interpolation=cv2.INTER_AREA)
    small_b = cv2.resize(b, (160, 90), interpolation=cv2.INTER_AREA)
    if np.abs(small_a.astype(np.int16) - small_b).mean() > 35:
        return True
    hist_a = cv2.calcHist([small_a], [0], None, [32], [0, 256])
    hist_b = cv2.calcHist([small_b], [0], None, [32], [0, 256])
    return cv2.compareHist(hist_a, hist_b, cv2.HISTCMP_CORREL) < 0.7


class _FlowPair:
    """Completed flows between frames i and i+1, both directions, over a region around the two
    holes (``offset`` is its top-left corner at flow scale); outside that region the motion is
    the homography fitted around the hole."""

    def __init__(self, offset, forward, backward, forward_model, backward_model):
        self.offset = np.float32(offset)
        self.forward, self.backward = forward, backward
        self.forward_model, self.backward_model = forward_model, backward_model

    def motion(self, points: np.ndarray, forward: bool) -> np.ndarray:
        """Flow vectors (N x 2) at (x, y) points in flow-scale frame coordinates."""
        field = self.forward if forward else self.backward
        model = self.forward_model if forward else self.backward_model
        local = points - self.offset
        height, width = field.shape[:2]
        inside = (local[:, 0] >= 0) & (local[:, 1] >= 0)
        inside &= (local[:, 0] <= width - 1) & (local[:, 1] <= height - 1)
        out = np.empty_like(points)
        out[inside] = _sample(field, local[inside])
        if (~inside).any():
            out[~inside] = _apply_homography(model, points[~inside]) - points[~inside]
        return out


class FlowGuidedInpainter:
    """Flow-guided propagation from up to ``context`` frames on each side, then spatial fill
    and seam feathering (``feather`` pixels at the hole's edge).

    Flow is estimated at a scale where the long side is at most ``flow_max_side``, only over
    the region around the holes (DIS at full detail there: coarse levels smear the object's
    motion well past its edge). A band of ``flow_margin`` pixels around the hole is completed
    with the hole. Flows are cached by frame index, so a clip is processed in order."""

    def __init__(
        self,
        context: int = 15,
        flow_max_side: int = 640,
        feather: int = 3,
        spatial_method: str = "telea",
        flow_margin: int = 12,
        region_margin: int = 48,
        check_consistency: bool = True,
    ):
        self.check_consistency = check_consistency
        self.context = context
        self.flow_max_side = flow_max_side
        self.feather = feather
        self.spatial_method = spatial_method
        self.flow_margin = flow_margin
        self.region_margin = region_margin
        self._flow = None
        self._gray: dict[int, np.ndarray] = {}
        self._small_holes: dict[int, np.ndarray] = {}
        self._pairs: dict[int, _FlowPair | str | None] = {}
        self._scale = 1.0

    def _gray_of(self, frames: Mapping[int, np.ndarray], i: int) -> np.ndarray:
        import cv2

        if i not in self._gray:
            frame = frames[i]
            self._scale = min(1.0, self.flow_max_side / max(frame.shape[:2]))
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            if self._scale != 1.0:
                gray = cv2.resize(
                    gray, None, fx=self._scale, fy=self._scale, interpolation=cv2.INTER_AREA
                )
            self._gray[i] = gray
        return self._gray[i]

    def _small_hole(self, holes, i: int, shape: tuple[int, int]) -> np.ndarray:
        import cv2

        if i not in self._small_holes:
            small = cv2.resize(
                holes[i].astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_AREA
            )
            # DIS matches 8-pixel patches, so the object's motion leaks several pixels past its
            # edge; that band is completed from the background motion around it too.
            grow = 2 * self.flow_margin + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))
            self._small_holes[i] = cv2.dilate((small > 0).astype(np.uint8), kernel) > 0
        return self._small_holes[i]

    def _pair(self, frames, holes, i: int) -> _FlowPair | str | None:
        """Completed flows between frames i and i+1; None when neither has a hole, SCENE_CUT
        when the two frames are from different shots."""
        import cv2

        if i not in self._pairs:
            a, b = self._gray_of(frames, i), self._gray_of(frames, i + 1)
            if is_scene_cut(a, b):
                self._pairs[i] = SCENE_CUT
                return SCENE_CUT
            hole_a = self._small_hole(holes, i, a.shape)
            hole_b = self._small_hole(holes, i + 1, a.shape)
            either = hole_a | hole_b
            ys, xs = np.nonzero(either)
            if ys.size == 0:
                self._pairs[i] = None
                return None
            pad = self.region_margin
            y0, y1 = max(0, ys.min() - pad), min(a.shape[0], ys.max() + pad + 1)
            x0, x1 = max(0, xs.min() - pad), min(a.shape[1], xs.max() + pad + 1)
            if self._flow is None:
                self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
                self._flow.setFinestScale(0)
                # Variational refinement would double the cost and smear motion past edges.
                self._flow.setVariationalRefinementIterations(0)
            ca = np.ascontiguousarray(a[y0:y1, x0:x1])
            cb = np.ascontiguousarray(b[y0:y1, x0:x1])
            forward = self._flow.calc(ca, cb, None)
            backward = self._flow.calc(cb, ca, None)
            # Measured flow is trusted only where it passes the forward-backward check;
            # the rest (occlusions, the band the object's motion smears into) is completed too.
            if self.check_consistency:
                bad_forward, bad_backward = inconsistent_flow(forward, backward)
            else:
                bad_forward = bad_backward = np.zeros(forward.shape[:2], bool)
            forward, forward_model = complete_flow(forward, hole_a[y0:y1, x0:x1] | bad_forward)
            backward, backward_model = complete_flow(backward, hole_b[y0:y1, x0:x1] | bad_backward)
            shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
            unshift = np.linalg.inv(shift)
            self._pairs[i] = _FlowPair(
                (x0, y0),
                forward,
                backward,
                shift @ forward_model @ unshift,
                shift @ backward_model @ unshift,
            )
        return self._pairs[i]

    def _forget_before(self, first: int) -> None:
        for cache in (self._gray, self._small_holes, self._pairs):
            for key in [k for k in cache if k < first]:
                del cache[key]

    def _propagate(self, frames, holes, index, ys, xs, direction):
        """Colours for hole pixels (ys, xs) of frame ``index`` found by following the flow in
        ``direction`` (+1 or -1): colours (N x 3) and steps taken (0 = not found)."""
        count = ys.size
        colours = np.zeros((count, 3), np.float32)
        steps = np.zeros(count, np.int32)
        s = self._scale
        pos = np.stack([(xs + 0.5) * s - 0.5, (ys + 0.5) * s - 0.5], axis=1).astype(np.float32)
        alive = np.arange(count)
        height, width = self._gray_of(frames, index).shape
        for k in range(1, self.context + 1):
            target = index + direction * k
            if target not in frames or target not in holes or alive.size == 0:
                break
            pair = self._pair(
                frames, holes, index + direction * (k - 1) if direction > 0 else target
            )
            if pair is SCENE_CUT:  # the other shot shows other things: nothing to take
                break
            p = pos[alive]
            moved = p if pair is None else p + pair.motion(p, forward=direction > 0)
            ok = (moved[:, 0] >= 0) & (moved[:, 1] >= 0)
            ok &= (moved[:, 0] <= width - 1) & (moved[:, 1] <= height - 1)
            alive, moved = alive[ok], moved[ok]
            pos[alive] = moved
            full = (moved + 0.5) / s - 0.5
            frame, hole = frames[target], holes[target]
            fh, fw = hole.shape
            cx = np.clip(np.rint(full[:, 0]).astype(np.int64), 0, fw - 1)
            cy = np.clip(np.rint(full[:, 1]).astype(np.int64), 0, fh - 1)
            seen = ~hole[cy, cx]
            if seen.any():
                colours[alive[seen]] = _sample(frame, full[seen])
                steps[alive[seen]] = k
                alive = alive[~seen]
        return colours, steps

    def inpaint(
        self, frames: Mapping[int, np.ndarray], holes: Mapping[int, np.ndarray], index: int
    ) -> np.ndarray:
        self._forget_before(index - self.context - 1)
        frame, hole = frames[index], holes[index]
        ys, xs = np.nonzero(hole)
        if ys.size == 0:
            return frame.copy()
        for i in frames:
            self._gray_of(frames, i)
        after, after_steps = self._propagate(frames, holes, index, ys, xs, +1)
        before, before_steps = self._propagate(frames, holes, index, ys, xs, -1)
        w_after = np.where(after_steps > 0, 1.0 / np.maximum(after_steps, 1), 0.0)
        w_before = np.where(before_steps > 0, 1.0 / np.maximum(before_steps, 1), 0.0)
        total = w_after + w_before
        blend = after * w_after[:, None] + before * w_before[:, None]
        found = total > 0
        blend /= np.maximum(total, 1e-9)[:, None]
        filled = frame.copy()
        filled[ys[found], xs[found]] = np.clip(np.rint(blend[found]), 0, 255).astype(np.uint8)
        unseen = np.zeros_like(hole)
        unseen[ys[~found], xs[~found]] = True
        if unseen.any():
            filled = spatial_fill(filled, unseen, self.spatial_method)
        return feather_into(frame, filled, hole, self.feather)


def feather_into(frame: np.ndarray, filled: np.ndarray, hole: np.ndarray, feather: int):
    """``frame`` with ``filled`` pasted inside ``hole``, fading in over ``feather`` pixels from
    the hole's edge; pixels outside the hole are those of ``frame``, untouched."""
    import cv2

    out = frame.copy()
    if feather <= 0:
        out[hole] = filled[hole]
        return out
    distance = cv2.distanceTransform(hole.astype(np.uint8), cv2.DIST_L2, 3)
    alpha = np.clip(distance / (feather + 1), 0.0, 1.0)[hole][:, None]
    mixed = alpha * filled[hole].astype(np.float32) + (1 - alpha) * frame[hole].astype(np.float32)
    out[hole] = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return out


def inconsistent_flow(
    forward: np.ndarray, backward: np.ndarray, relative: float = 0.01, absolute: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Where forward and backward flow disagree (Sundaram et al. 2010): a pixel carried forward
    and back should come home, up to ``relative`` times the squared motion plus ``absolute``
    (pixels squared). Returns the masks of failing pixels in the first and in the second frame."""
    import cv2

    height, width = forward.shape[:2]
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )

    def failing(there: np.ndarray, back: np.ndarray) -> np.ndarray:
        returned = cv2.remap(
            back,
            grid_x + there[..., 0],
            grid_y + there[..., 1],
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        error = np.sum((there + returned) ** 2, axis=2)
        limit = relative * (np.sum(there**2, axis=2) + np.sum(returned**2, axis=2)) + absolute
        return error > limit

    return failing(forward, backward), failing(backward, forward)


def complete_flow(
    flow: np.ndarray, hole: np.ndarray, residual: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``flow`` with the values inside ``hole`` replaced from the background motion around it:
    a homography fitted (RANSAC) to the flow in a ring around the hole, which follows any camera
    motion over a plane, plus the smooth (pull-push) fill of what the homography leaves over.
    Returns the completed flow and the homography (identity when too little is known)."""
    import cv2

    identity = np.eye(3)
    if not hole.any():
        return flow, identity
    ys, xs = np.nonzero(hole)
    pad = 12
    y0, y1 = max(0, ys.min() - pad), min(flow.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(flow.shape[1], xs.max() + pad + 1)
    crop, crop_hole = flow[y0:y1, x0:x1], hole[y0:y1, x0:x1] > 0
    ring = cv2.dilate(crop_hole.astype(np.uint8), np.ones((2 * pad + 1, 2 * pad + 1), np.uint8))
    ring_ys, ring_xs = np.nonzero((ring > 0) & ~crop_hole)
    model = np.zeros_like(crop)
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    found_model = identity
    if ring_ys.size >= 12:
        pick = np.linspace(0, ring_ys.size - 1, min(ring_ys.size, 600)).astype(np.int64)
        src = np.stack([ring_xs[pick], ring_ys[pick]], 1).astype(np.float32)
        dst = src + crop[ring_ys[pick], ring_xs[pick]]
        homography, _ = cv2.findHomography(src, dst, cv2.RANSAC, 0.5)
        if homography is not None:
            grid_y, grid_x = np.mgrid[0 : crop.shape[0], 0 : crop.shape[1]].astype(np.float32)
            grid = np.stack([grid_x, grid_y], -1).reshape(-1, 1, 2)
            mapped = cv2.perspectiveTransform(grid, homography).reshape(crop.shape)
            model = mapped - grid.reshape(crop.shape)
            found_model = shift @ homography @ np.linalg.inv(shift)
        else:
            model[:] = np.median(dst - src, axis=0)
            found_model = np.array([[1, 0, model[0, 0, 0]], [0, 1, model[0, 0, 1]], [0, 0, 1]])
    out = flow.copy()
    filled = model.copy()
    if residual:
        filled += pull_push_fill(crop - model, crop_hole)
    out[y0:y1, x0:x1][crop_hole] = filled[crop_hole]
    return out, found_model


def _apply_homography(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.perspectiveTransform(points.reshape(-1, 1, 2), homography).reshape(-1, 2)


def pull_push_fill(values: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Smooth interpolation of an H x W x C float field into ``hole`` from the known values
    around it (pull-push: average known values down a pyramid until every cell has one, then
    bring the coarse estimates back up to fill the unknown cells)."""
    import cv2

    values = values.astype(np.float32)
    weight = (~hole).astype(np.float32)
    if weight.sum() == 0:
        return np.zeros_like(values)
    pyramid = [(values * weight[..., None], weight)]
    while pyramid[-1][1].min() <= 0 and min(pyramid[-1][1].shape) > 1:
        v, w = pyramid[-1]
        size = (max(1, (w.shape[1] + 1) // 2), max(1, (w.shape[0] + 1) // 2))
        v = cv2.resize(v, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        w = cv2.resize(w, size, interpolation=cv2.INTER_AREA)
        pyramid.append((v, w))
    v, w = pyramid[-1]
    estimate = v / np.maximum(w, 1e-6)[..., None]
    for v, w in reversed(pyramid[:-1]):
        up = cv2.resize(estimate, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR)
        up = up.reshape(w.shape[0], w.shape[1], -1)
        # Known cells keep their own value; partly known cells mix it with the coarse guess.
        estimate = v + (1.0 - np.minimum(w, 1.0))[..., None] * up
        estimate = np.where(w[..., None] > 0, v / np.maximum(w, 1e-6)[..., None], estimate)
    out = values.copy()
    out[hole] = estimate.reshape(values.shape)[hole]
    return out


def _sample(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear samples of an H x W x C image at N (x, y) points: N x C, edges replicated."""
    import cv2

    count = points.shape[0]
    channels = 1 if field.ndim == 2 else field.shape[2]
    if count == 0:
        return np.zeros((0, channels), field.dtype)
    # cv2.remap wants maps under 32767 on each side, so the points are laid out in rows.
    width = min(count, 4096)
    rows = -(-count // width)
    padded = np.zeros((rows * width, 2), np.float32)
    padded[:count] = points
    x = padded[:, 0].reshape(rows, width)
    y = padded[:, 1].reshape(rows, width)
    values = cv2.remap(field, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return values.reshape(rows * width, channels)[:count]
