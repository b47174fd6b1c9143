"""Inpainting pieces: flow completion, pull-push fill, feathering, the protocol, and flow-guided
filling against per-frame Telea with the true holes."""

import numpy as np
import pytest

from septet.errors import ConfigError
from septet.video.inpainting import (
    FlowGuidedInpainter,
    Inpainter,
    SpatialInpainter,
    complete_flow,
    feather_into,
    inconsistent_flow,
    pull_push_fill,
)
from septet.video.metrics import psnr
from septet.video.pipeline import dilate_mask


def hole_in(shape=(60, 80)):
    hole = np.zeros(shape, bool)
    hole[20:40, 30:50] = True
    return hole


def test_completed_flow_inside_a_hole_follows_the_camera_motion_around_it():
    # A zoom-and-pan: flow(x, y) = (0.05 x + 2, 0.05 y - 1), an exact homography.
    ys, xs = np.mgrid[0:60, 0:80].astype(np.float32)
    truth = np.stack([0.05 * xs + 2, 0.05 * ys - 1], axis=-1)
    hole = hole_in()
    polluted = truth.copy()
    polluted[hole] = (9.0, -7.0)  # the object's own motion
    completed, homography = complete_flow(polluted, hole)
    assert np.abs(completed[hole] - truth[hole]).max() < 0.05
    assert np.array_equal(completed[~hole], truth[~hole])
    assert homography.shape == (3, 3)


def test_pull_push_fill_keeps_known_values_and_fills_a_constant_field_exactly():
    field = np.full((30, 40, 2), 3.5, np.float32)
    hole = hole_in((30, 40))
    field[hole] = -100
    filled = pull_push_fill(field, hole)
    assert np.allclose(filled, 3.5)


def test_forward_backward_check_flags_an_occlusion():
    forward = np.zeros((20, 20, 2), np.float32)
    backward = np.zeros((20, 20, 2), np.float32)
    backward[5:10, 5:10] = (4.0, 0.0)  # these pixels do not come home
    bad_forward, bad_backward = inconsistent_flow(forward, backward)
    for bad in (bad_forward, bad_backward):
        assert bad[5:10, 5:10].all()
        bad[5:10, 5:10] = False
        assert not bad.any()


def test_feathering_touches_only_the_hole_and_fills_its_core_fully():
    frame = np.zeros((40, 40, 3), np.uint8)
    filled = np.full((40, 40, 3), 200, np.uint8)
    hole = np.zeros((40, 40), bool)
    hole[10:30, 10:30] = True
    out = feather_into(frame, filled, hole, feather=3)
    assert np.array_equal(out[~hole], frame[~hole])
    assert (out[15:25, 15:25] == 200).all()
    assert 0 < out[10, 20, 0] < 200  # the hole's edge blends


def test_inpainters_meet_the_protocol_and_reject_unknown_methods():
    assert isinstance(FlowGuidedInpainter(), Inpainter)
    assert isinstance(SpatialInpainter(), Inpainter)
    with pytest.raises(ConfigError, match="telea"):
        SpatialInpainter("patchmatch")


def test_flow_guided_filling_beats_per_frame_telea_with_the_true_holes(clip):
    frames = {t: c.frame for t, c in enumerate(clip.truth)}
    holes = {t: dilate_mask(c.mask, 3) for t, c in enumerate(clip.truth)}
    flow_guided, telea = FlowGuidedInpainter(context=10), SpatialInpainter("telea")
    for t in (2, 12, 21):
        ours = flow_guided.inpaint(frames, holes, t)
        assert np.array_equal(ours[~holes[t]], frames[t][~holes[t]])
        truth = clip.truth[t]
        ours_psnr = psnr(ours, truth.clean, truth.mask)
        telea_psnr = psnr(telea.inpaint(frames, holes, t), truth.clean, truth.mask)
        assert ours_psnr > telea_psnr + 6, (t, ours_psnr, telea_psnr)


def test_a_frame_without_a_hole_comes_back_unchanged(clip):
    frame = clip.truth[0].frame
    empty = np.zeros(frame.shape[:2], bool)
    out = FlowGuidedInpainter().inpaint({0: frame}, {0: empty}, 0)
    assert np.array_equal(out, frame)


def test_nothing_is_taken_across_a_cut_to_another_shot():
    from septet.video.composite import composite, linear_path, object_from_photo, photo_pan
    from septet.video.inpainting import is_scene_cut

    texture, shape = object_from_photo("chelsea", 36, 46)
    backgrounds = [*photo_pan("astronaut", 144, 192, 6), *photo_pan("coffee", 144, 192, 6)]
    route = linear_path((20, 40), (120, 60), 12)
    scene = list(composite(backgrounds, texture, shape, route))
    frames = {t: s.frame for t, s in enumerate(scene)}
    holes = {t: dilate_mask(s.mask, 3) for t, s in enumerate(scene)}
    grey = [f[..., 1] for f in frames.values()]
    assert is_scene_cut(grey[5], grey[6]) and not is_scene_cut(grey[4], grey[5])
    whole = FlowGuidedInpainter(context=6).inpaint(frames, holes, 5)
    first_shot = {t: frames[t] for t in range(6)}
    alone = FlowGuidedInpainter(context=6).inpaint(first_shot, holes, 5)
    assert np.array_equal(whole, alone)
