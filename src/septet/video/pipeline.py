"""``remove_object``: track the box, cut the object's mask in every frame, fill the hole from
the other frames, and write the clip back with every pixel outside the (dilated) mask unchanged.

The clip streams through twice: once to track the box (boxes are all it keeps), once to
segment, inpaint and write. The second pass holds a sliding window of frames: segmentation runs
``background_gap`` frames behind the newest frame read (it looks that far ahead for a clean
background), smoothing ``smooth`` frames behind that, and inpainting ``context`` frames further
behind (it looks that far either way), so memory depends on those settings, not on clip length.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from septet.common.config import dataclass_from_dict
from septet.errors import ConfigError, InputError
from septet.video.box import Box, box_from_mask, check_box_in_frame, parse_box
from septet.video.inpainting import FlowGuidedInpainter, Inpainter, is_scene_cut
from septet.video.segmentation import GrabCutSegmenter, Segmenter, estimate_background
from septet.video.tracking import CSRTTracker, resize_by, track_box, working_scale
from septet.video.video_io import (
    VideoWriter,
    count_mask_files,
    probe,
    read_frames,
    read_mask_folder,
)


@dataclass
class RemovalConfig:
    """How the object is removed. ``from_dict`` rejects unknown keys by name."""

    dilate: int | None = None  # pixels the mask grows by; None: 1/80 of the long side, >= 3
    context: int = 15  # frames on each side that the inpainter may take pixels from
    background_gap: int = 20  # frames on each side searched for a clean background (masks)
    smooth: int = 1  # masks are a majority vote over this many frames on each side
    work_max_side: int = 640  # segmentation runs at most this big
    track_max_side: int = 480  # tracking runs at most this big (CSRT's cost grows with it)
    background_neighbours: int = 1  # clean frames per side whose median is the background
    lossless: bool | None = (
        None  # None: lossless for folders/avi/mkv, high-quality H.264 for mp4/mov
    )
    keep_audio: bool = True

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RemovalConfig:
        """A config from a dict; an unknown key is a ConfigError naming it and the known keys."""
        config = dataclass_from_dict(cls, values, "video removal")
        config.validate()
        return config

    def validate(self) -> None:
        for name in ("context", "background_gap", "smooth"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.dilate is not None and self.dilate < 0:
            raise ConfigError(f"dilate must be >= 0 pixels, got {self.dilate}")
        for name in ("work_max_side", "track_max_side"):
            if getattr(self, name) < 32:
                raise ConfigError(f"{name} must be >= 32, got {getattr(self, name)}")
        if self.background_neighbours < 1:
            raise ConfigError(
                f"background_neighbours must be >= 1, got {self.background_neighbours}"
            )

    def dilation_for(self, width: int, height: int) -> int:
        """The dilation in pixels for a ``width`` x ``height`` clip."""
        if self.dilate is not None:
            return self.dilate
        return max(3, round(max(width, height) / 80))


@dataclass
class RemovalResult:
    """What ``remove_object`` did: the output, the clip's shape, the boxes it followed."""

    output: Path
    frames: int
    width: int
    height: int
    fps: Fraction
    codec: str
    dilate: int
    tracked_boxes: list[Box] = field(default_factory=list)  # the tracker's boxes (box mode)
    object_boxes: list[Box | None] = field(default_factory=list)  # tight boxes of the masks
    seconds: float = 0.0
    peak_frames_held: int = 0  # bounded by the window (context, background_gap, smooth)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """``mask`` grown by ``pixels`` (a disc), the region that ``remove_object`` may rewrite."""
    import cv2

    if pixels <= 0:
        return mask.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel) > 0


def remove_object(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    box: Box | str | None = None,
    *,
    frame: int = 0,
    mask_dir: str | os.PathLike[str] | None = None,
    config: RemovalConfig | None = None,
    tracker_factory=CSRTTracker,
    segmenter: Segmenter | None = None,
    inpainter: Inpainter | None = None,
    masks_out: str | os.PathLike[str] | None = None,
) -> RemovalResult:
    """Remove the object in ``box`` (x, y, w, h on frame ``frame``) or given by the masks in
    ``mask_dir`` from the clip ``input``; write the result to ``output`` (a video file or an
    image folder) and, if asked, the object masks to ``masks_out`` (an image folder)."""
    started = time.perf_counter()
    config = config or RemovalConfig()
    config.validate()
    info = probe(input)
    if (box is None) == (mask_dir is None):
        raise InputError("give either a box (--box x,y,w,h) or a folder of masks (--mask-dir)")
    if Path(output).resolve() == Path(input).resolve():
        raise InputError(f"output {str(output)!r} is the input; write the result somewhere else")
    dilate = config.dilation_for(info.width, info.height)
    tracked: list[Box] = []
    if box is not None:
        box = parse_box(box) if isinstance(box, str) else box
        box = check_box_in_frame(box, info.width, info.height)
        if frame < 0 or (info.frame_count is not None and frame >= info.frame_count):
            raise InputError(
                f"--frame {frame} is outside the clip, which has {info.frame_count} frames "
                f"(numbered 0 to {(info.frame_count or 1) - 1})"
            )
        tracked = track_box(
            read_frames(input),
            box,
            frame,
            tracker_factory=tracker_factory,
            max_side=config.track_max_side,
            frame_count=info.frame_count,
        )
        given_masks = None
    else:
        count = count_mask_files(mask_dir)
        if info.frame_count is not None and count != info.frame_count:
            raise InputError(
                f"mask folder {str(mask_dir)!r} holds {count} masks but the clip has "
                f"{info.frame_count} frames; give one mask per frame"
            )
        given_masks = read_mask_folder(mask_dir)
    window = _RemovalWindow(
        info.width,
        info.height,
        config,
        dilate,
        tracked,
        given_masks,
        segmenter or GrabCutSegmenter(),
        # The seam is feathered over the dilation band only: feathering deeper would let the
        # object's own edge pixels show through.
        inpainter or FlowGuidedInpainter(context=config.context, feather=min(3, dilate)),
    )
    audio = input if (info.has_audio and config.keep_audio) else None
    from septet.common import progress_bar

    mask_writer = None
    with VideoWriter(
        output, info.width, info.height, info.fps, lossless=config.lossless, audio_from=audio
    ) as writer:
        if masks_out is not None:
            mask_writer = VideoWriter(masks_out, info.width, info.height, info.fps)
        try:
            with progress_bar(info.frame_count, "removing") as bar:
                for done, mask in window.run(read_frames(input)):
                    writer.write(done)
                    if mask_writer is not None:
                        mask_writer.write(np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, 2))
                    bar.advance()
        except BaseException:
            if mask_writer is not None:
                mask_writer.abort()
            raise
        if mask_writer is not None:
            mask_writer.close()
        codec = writer.codec
        frames = writer.count
    if tracked and frames != len(tracked):
        raise InputError(f"{str(input)!r} changed while it was read; run again")
    return RemovalResult(
        Path(output),
        frames,
        info.width,
        info.height,
        info.fps,
        codec,
        dilate,
        tracked,
        window.object_boxes,
        time.perf_counter() - started,
        window.peak_frames_held,
    )


class _RemovalWindow:
    """The sliding window of the second pass: frames in, finished frames out, in order."""

    def __init__(self, width, height, config, dilate, tracked, given_masks, segmenter, inpainter):
        self.width, self.height = width, height
        self.config, self.dilate = config, dilate
        self.tracked = tracked
        self.given_masks: Iterator[np.ndarray] | None = given_masks
        self.segmenter, self.inpainter = segmenter, inpainter
        self.scale = working_scale(width, height, config.work_max_side)
        self.gap = config.background_gap if given_masks is None else 0
        self.smooth = config.smooth if given_masks is None else 0
        self.context = inpainter.context
        self.full: dict[int, np.ndarray] = {}
        self.small: dict[int, np.ndarray] = {}
        self.raw: dict[int, np.ndarray] = {}  # masks at working size, before smoothing
        self.masks: dict[int, np.ndarray] = {}  # full size, smoothed
        self.holes: dict[int, np.ndarray] = {}  # full size, dilated
        self.object_boxes: list[Box | None] = []
        self.peak_frames_held = 0  # the most full-size frames in memory at once
        self.cuts: set[int] = set()  # i is here when frames i-1 and i are from different shots
        self.next_segment = self.next_smooth = self.next_out = 0

    def run(self, frames: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each finished frame with its object mask, in order."""
        last = -1
        for last, frame in enumerate(frames):
            if frame.shape[:2] != (self.height, self.width):
                raise InputError(f"frame {last} changes size; every frame must have one size")
            self.full[last] = frame
            self.peak_frames_held = max(self.peak_frames_held, len(self.full))
            if self.given_masks is None:
                self.small[last] = resize_by(frame, self.scale)
                if last > 0 and is_scene_cut(_grey(self.small[last - 1]), _grey(self.small[last])):
                    self.cuts.add(last)
            yield from self._drain(last, eof=False)
        if last < 0:
            raise InputError("the clip has no frames to process")
        yield from self._drain(last, eof=True)

    def _drain(self, last: int, eof: bool):
        while self.next_segment <= last and (eof or self.next_segment + self.gap <= last):
            self._segment(self.next_segment, last)
            self.next_segment += 1
        while self.next_smooth < self.next_segment and (
            eof or self.next_smooth + self.smooth < self.next_segment
        ):
            self._smooth(self.next_smooth)
            self.next_smooth += 1
        while self.next_out < self.next_smooth and (
            eof or self.next_out + self.context < self.next_smooth
        ):
            t = self.next_out
            ready = {k: self.full[k] for k in self.holes}
            done = self.inpainter.inpaint(ready, self.holes, t)
            yield done, self.masks.pop(t)
            self.next_out += 1
            self._evict()

    def _evict(self) -> None:
        keep_from = self.next_out - self.context
        for store in (self.full, self.holes):
            for k in [k for k in store if k < keep_from]:
                del store[k]
        for k in [k for k in self.small if k < self.next_segment - self.gap]:
            del self.small[k]
        for k in [k for k in self.raw if k < self.next_smooth - self.smooth]:
            del self.raw[k]

    def _segment(self, j: int, last: int) -> None:
        if self.given_masks is not None:
            mask = next(self.given_masks, None)
            if mask is None:
                raise InputError(f"the mask folder has no mask for frame {j}")
            if mask.shape != (self.height, self.width):
                raise InputError(
                    f"mask {j} is {mask.shape[1]}x{mask.shape[0]}; the clip is "
                    f"{self.width}x{self.height}"
                )
            self.raw[j] = mask
            return
        s = self.scale
        small = self.small[j]
        sh, sw = small.shape[:2]
        box = self.tracked[j].scaled(s)
        crop = box.expanded(0.25).clipped(sw, sh)
        rows, cols = crop.slices(sw, sh)
        crop = Box(
            float(cols.start),
            float(rows.start),
            float(cols.stop - cols.start),
            float(rows.stop - rows.start),
        )
        neighbours = self._clean_neighbours(j, last)
        background = None
        if neighbours:
            background = estimate_background(
                small,
                [self.small[n] for n in neighbours],
                [box] + [self.tracked[n].scaled(s) for n in neighbours],
                crop,
            )
        inner = Box(box.x - crop.x, box.y - crop.y, box.w, box.h)
        part = self.segmenter.segment(small[rows, cols], inner, background)
        mask = np.zeros((sh, sw), bool)
        mask[rows, cols] = part
        self.raw[j] = mask

    def _clean_neighbours(self, j: int, last: int) -> list[int]:
        """Up to ``background_neighbours`` frames per side, nearest first, where the box does not
        overlap its box in frame j (so they show the background behind it)."""
        here = self.tracked[j].expanded(0.1)
        chosen = []
        for direction in (-1, 1):
            found = 0
            for k in range(1, self.gap + 1):
                n = j + direction * k
                if n < 0 or n > last or n not in self.small:
                    break
                if (n + 1 if direction < 0 else n) in self.cuts:  # another shot from here on
                    break
                if self.tracked[n].expanded(0.1).iou(here) == 0.0:
                    chosen.append(n)
                    found += 1
                    if found == self.config.background_neighbours:
                        break
        return chosen

    def _cut_between(self, a: int, b: int) -> bool:
        return any(i in self.cuts for i in range(min(a, b) + 1, max(a, b) + 1))

    def _smooth(self, k: int) -> None:
        import cv2

        mask = self.raw[k]
        if self.smooth > 0 and self.tracked:
            votes = mask.astype(np.float32)
            count = 1
            cx, cy = self.tracked[k].scaled(self.scale).center
            for n in range(k - self.smooth, k + self.smooth + 1):
                if n == k or n not in self.raw or self._cut_between(n, k):
                    continue
                nx, ny = self.tracked[n].scaled(self.scale).center
                shift = np.float32([[1, 0, cx - nx], [0, 1, cy - ny]])
                moved = cv2.warpAffine(
                    self.raw[n].astype(np.float32), shift, (mask.shape[1], mask.shape[0])
                )
                votes += moved
                count += 1
            mask = votes / count >= 0.5
        if mask.shape != (self.height, self.width):
            up = cv2.resize(
                mask.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_LINEAR
            )
            mask = up > 0.5
        self.masks[k] = mask
        self.holes[k] = dilate_mask(mask, self.dilate)
        self.object_boxes.append(box_from_mask(mask))


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
