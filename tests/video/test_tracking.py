"""Tracking: CSRT follows the object; when it jumps away, re-detection finds it again."""

import numpy as np

from septet.video.box import Box
from septet.video.tracking import CSRTTracker, Tracker, track_box

from .helpers import make_clip


def test_csrt_tracker_meets_the_tracker_protocol():
    assert isinstance(CSRTTracker(), Tracker)


def test_tracking_forward_follows_the_object(clip):
    boxes = track_box((t.frame for t in clip.truth), clip.truth[0].box)
    assert min(b.iou(t.box) for b, t in zip(boxes, clip.truth, strict=True)) >= 0.8


def test_an_object_that_jumps_is_found_again(tmp_path):
    jumping = make_clip(tmp_path / "jump.avi", frames=12, pan=(0.0, 0.0), jump_at=6)
    boxes = track_box((t.frame for t in jumping.truth), jumping.truth[0].box)
    ious = [b.iou(t.box) for b, t in zip(boxes, jumping.truth, strict=True)]
    assert min(ious[:6]) >= 0.8
    assert min(ious[7:]) >= 0.6, ious  # re-detected within a frame of the jump


def test_a_tracker_that_loses_the_object_keeps_its_last_box():
    class LosesIt:
        def init(self, frame, box):
            pass

        def update(self, frame):
            return None

    frames = [np.zeros((40, 40, 3), np.uint8)] * 4
    boxes = track_box(frames, Box(5, 5, 10, 10), tracker_factory=LosesIt)
    assert boxes == [Box(5, 5, 10, 10)] * 4


def test_tracking_backward_from_a_middle_frame(clip):
    middle = len(clip.truth) // 2
    boxes = track_box((t.frame for t in clip.truth), clip.truth[middle].box, start=middle)
    assert boxes[middle] == clip.truth[middle].box
    assert min(b.iou(t.box) for b, t in zip(boxes, clip.truth, strict=True)) >= 0.8
