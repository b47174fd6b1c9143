"""Acceptance: box an object on a composite clip; it is tracked, masked and removed, and the
result is scored against the exact ground truth (issue 7)."""

from fractions import Fraction

import numpy as np
import pytest

from septet.errors import ConfigError, InputError
from septet.video import RemovalConfig, SpatialInpainter, dilate_mask, probe, remove_object
from septet.video.metrics import mask_iou, psnr
from septet.video.video_io import read_frames

from .helpers import FRAMES, HEIGHT, WIDTH, make_clip


@pytest.fixture(scope="module")
def removal(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("removal")
    result = remove_object(clip.path, out / "removed.avi", clip.truth[0].box, masks_out=out / "m")
    frames = list(read_frames(result.output))
    masks = [m[..., 0] > 0 for m in read_frames(out / "m")]
    return result, frames, masks


def test_the_tracked_box_overlaps_the_object_on_every_frame(clip, removal):
    result, _, _ = removal
    tracked = [box.iou(t.box) for box, t in zip(result.tracked_boxes, clip.truth, strict=True)]
    assert min(tracked) >= 0.8, tracked
    # The masks' own boxes, the refined track, fit the object at least as well.
    refined = [box.iou(t.box) for box, t in zip(result.object_boxes, clip.truth, strict=True)]
    assert min(refined) >= 0.8, refined


def test_the_object_mask_matches_the_truth_on_every_frame(clip, removal):
    _, _, masks = removal
    ious = [mask_iou(m, t.mask) for m, t in zip(masks, clip.truth, strict=True)]
    assert min(ious) >= 0.8, ious


def test_pixels_outside_the_dilated_mask_are_byte_identical(clip, removal):
    result, frames, masks = removal
    assert result.codec == "ffv1"  # lossless, so the check is about our pixels, not a codec's
    for out, mask, truth in zip(frames, masks, clip.truth, strict=True):
        outside = ~dilate_mask(mask, result.dilate)
        assert np.array_equal(out[outside], truth.frame[outside])


def test_frame_count_size_and_rate_are_unchanged(clip, removal):
    result, frames, _ = removal
    info = probe(result.output)
    assert (len(frames), info.width, info.height) == (FRAMES, WIDTH, HEIGHT)
    assert info.fps == probe(clip.path).fps == Fraction(25)


def test_the_hole_is_filled_better_than_per_frame_telea(clip, removal):
    result, frames, masks = removal
    telea = SpatialInpainter("telea")
    ours, baseline = [], []
    for t, (out, mask, truth) in enumerate(zip(frames, masks, clip.truth, strict=True)):
        hole = dilate_mask(mask, result.dilate)
        ours.append(psnr(out, truth.clean, truth.mask))
        baseline.append(
            psnr(telea.inpaint({t: truth.frame}, {t: hole}, t), truth.clean, truth.mask)
        )
    assert np.mean(ours) > np.mean(baseline) + 4.0, (np.mean(ours), np.mean(baseline))
    assert sum(o > b for o, b in zip(ours, baseline, strict=True)) >= 0.9 * FRAMES


def test_a_box_drawn_on_a_middle_frame_is_tracked_both_ways(clip, tmp_path):
    middle = FRAMES // 2
    result = remove_object(
        clip.path, tmp_path / "out", clip.truth[middle].box, frame=middle, config=RemovalConfig()
    )
    ious = [box.iou(t.box) for box, t in zip(result.tracked_boxes, clip.truth, strict=True)]
    assert min(ious) >= 0.8, ious
    assert len(list(read_frames(tmp_path / "out"))) == FRAMES


def test_given_masks_replace_tracking_and_only_their_dilation_changes(clip, tmp_path):
    import cv2

    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    for t, truth in enumerate(clip.truth):
        cv2.imwrite(str(mask_dir / f"{t:04d}.png"), truth.mask.astype(np.uint8) * 255)
    result = remove_object(
        clip.path, tmp_path / "out.mkv", mask_dir=mask_dir, config=RemovalConfig(dilate=2)
    )
    assert result.tracked_boxes == []
    scores = []
    for out, truth in zip(read_frames(tmp_path / "out.mkv"), clip.truth, strict=True):
        outside = ~dilate_mask(truth.mask, 2)
        assert np.array_equal(out[outside], truth.frame[outside])
        scores.append(psnr(out, truth.clean, truth.mask))
    assert np.mean(scores) > 28 and min(scores) > 20, scores


def test_unreadable_input_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="cannot read video"):
        remove_object(junk, tmp_path / "out.avi", "1,1,5,5")


def test_a_box_outside_the_frame_is_a_clear_error(clip, tmp_path):
    with pytest.raises(InputError, match=f"outside the {WIDTH}x{HEIGHT} frame"):
        remove_object(clip.path, tmp_path / "out.avi", "500,500,20,20")
    assert not (tmp_path / "out.avi").exists()


def test_an_empty_clip_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        remove_object(tmp_path / "empty", tmp_path / "out.avi", "1,1,5,5")


def test_a_start_frame_past_the_end_is_a_clear_error(clip, tmp_path):
    with pytest.raises(InputError, match="outside the clip"):
        remove_object(clip.path, tmp_path / "out.avi", clip.truth[0].box, frame=FRAMES)


def test_masks_that_do_not_match_the_clip_are_a_clear_error(clip, tmp_path):
    import cv2

    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "0.png"), np.zeros((HEIGHT, WIDTH), np.uint8))
    with pytest.raises(InputError, match="holds 1 masks but the clip has 24 frames"):
        remove_object(clip.path, tmp_path / "out.avi", mask_dir=tmp_path / "masks")
    with pytest.raises(InputError, match="does not exist"):
        remove_object(clip.path, tmp_path / "out.avi", mask_dir=tmp_path / "nowhere")


def test_box_and_masks_together_are_refused(clip, tmp_path):
    with pytest.raises(InputError, match="either a box"):
        remove_object(clip.path, tmp_path / "o.avi", "1,1,5,5", mask_dir=tmp_path)


def test_unknown_config_keys_are_named():
    with pytest.raises(ConfigError, match="dilation"):
        RemovalConfig.from_dict({"dilation": 3})
    with pytest.raises(ConfigError, match="context"):
        RemovalConfig.from_dict({"context": -1})


def test_a_short_clip_with_a_camera_that_stands_still(tmp_path):
    still = make_clip(tmp_path / "still.avi", frames=12, pan=(0.0, 0.0))
    result = remove_object(still.path, tmp_path / "out.avi", still.truth[0].box)
    frames = list(read_frames(result.output))
    assert len(frames) == 12
    scores = [psnr(o, t.clean, t.mask) for o, t in zip(frames, still.truth, strict=True)]
    assert np.mean(scores) > 25, scores


def test_memory_holds_a_window_of_frames_not_the_clip(clip, tmp_path):
    config = RemovalConfig(context=3, background_gap=4, smooth=1)
    result = remove_object(clip.path, tmp_path / "out.avi", clip.truth[0].box, config=config)
    assert result.frames == FRAMES
    # Segmentation looks 4 ahead, smoothing 1 more, inpainting 3 either way: 13 frames at most.
    assert result.peak_frames_held <= 4 + 1 + 2 * 3 + 2 < FRAMES


def test_image_folders_in_and_out_keep_every_frame_and_the_rate(clip, tmp_path):
    from septet.video.video_io import VideoWriter

    frames_in = tmp_path / "frames"
    with VideoWriter(frames_in, WIDTH, HEIGHT, Fraction(30000, 1001)) as writer:
        for truth in clip.truth[:8]:
            writer.write(truth.frame)
    result = remove_object(frames_in, tmp_path / "out", clip.truth[0].box)
    assert result.codec == "png-images" and result.frames == 8
    assert probe(tmp_path / "out").fps == Fraction(30000, 1001)
    for out, truth in zip(read_frames(tmp_path / "out"), clip.truth, strict=False):
        far = ~dilate_mask(truth.mask, 4 * result.dilate)  # well away from the object
        assert np.array_equal(out[far], truth.frame[far])
        assert not np.array_equal(out[truth.mask], truth.frame[truth.mask])
