"""The `septet video` commands, run as a user runs them."""

import subprocess
import sys

import numpy as np

from septet.video.video_io import probe, read_frames


def septet(*args):
    return subprocess.run(
        [sys.executable, "-m", "septet", "video", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_remove_writes_the_clip_and_says_what_it_did(clip, tmp_path):
    x, y, w, h = clip.truth[0].box.as_ints()
    out = tmp_path / "removed"
    run = septet("remove", clip.path, "-o", out, "--box", f"{x},{y},{w},{h}", "--dilate", "4")
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}: 24 frames, 192x144 at 25 fps (png-images)" in run.stdout
    assert "dilated by 4 px" in run.stdout
    frames = list(read_frames(out))
    assert len(frames) == 24 and probe(out).fps == 25
    assert not np.array_equal(frames[0], clip.truth[0].frame)


def test_a_box_outside_the_frame_is_one_line_and_exit_2(clip, tmp_path):
    run = septet("remove", clip.path, "-o", tmp_path / "o.avi", "--box", "900,900,10,10")
    assert run.returncode == 2
    assert run.stderr.startswith("error: box x=900,y=900,w=10,h=10 lies outside the 192x144")
    assert len(run.stderr.strip().splitlines()) == 1


def test_an_unreadable_input_is_one_line_and_exit_2(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video")
    run = septet("remove", junk, "-o", tmp_path / "o.mp4", "--box", "1,1,4,4")
    assert run.returncode == 2 and "cannot read video" in run.stderr


def test_info_and_frame(clip, tmp_path):
    run = septet("info", clip.path)
    assert run.returncode == 0
    assert run.stdout.strip().endswith("192x144, 25 fps, 24 frames, no audio")
    run = septet("frame", clip.path, "-o", tmp_path / "f.png", "--frame", "3")
    assert run.returncode == 0 and (tmp_path / "f.png").stat().st_size > 0
