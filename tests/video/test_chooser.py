"""Choosing the box: a frame PNG with a pixel grid, and a page on localhost to drag it."""

import threading

import cv2
import httpx
import numpy as np
import pytest

from septet.errors import InputError
from septet.video.box import Box
from septet.video.chooser import (
    BoxChooserServer,
    draw_grid,
    read_frame,
    select_box_on_screen,
    write_grid_frame,
)
from septet.video.video_io import read_frames


def test_the_grid_frame_is_the_chosen_frame_with_lines_on_it(clip, tmp_path):
    target = write_grid_frame(clip.path, tmp_path / "grid.png", index=5, step=50)
    image = cv2.imread(str(target))
    frame = clip.truth[5].frame
    assert image.shape == frame.shape
    # Grid lines change the pixels on x = 50, 100, ...; pixels between the lines and the labels
    # are the frame's own.
    assert not np.array_equal(image[:, 50], frame[:, 50])
    assert np.array_equal(image[101:149, 75], frame[101:149, 75])


def test_draw_grid_picks_a_round_spacing_by_itself():
    frame = np.zeros((360, 640, 3), np.uint8)
    lines = draw_grid(frame)
    assert lines[:, 100].any() and not lines[101:199, 150].any()  # 640 wide: every 100 px


def test_reading_a_frame_past_the_end_is_a_clear_error(clip):
    with pytest.raises(InputError, match="past the clip's end"):
        read_frame(clip.path, 1000)


def test_the_web_page_serves_the_frame_and_returns_the_box_dragged(clip):
    frame = next(iter(read_frames(clip.path)))
    with BoxChooserServer(frame, index=0) as server:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            page = client.get("/")
            assert page.status_code == 200 and "<canvas" in page.text
            png = client.get("/frame.png")
            decoded = cv2.imdecode(np.frombuffer(png.content, np.uint8), cv2.IMREAD_COLOR)
            assert np.array_equal(decoded, frame)
            outside = client.post("/box", json={"x": 500, "y": 500, "w": 20, "h": 20})
            assert outside.status_code == 400 and "outside" in outside.text
            assert client.post("/box", json={"x": 1}).status_code == 400
            chosen = client.post("/box", json={"x": 10, "y": 20, "w": 30, "h": 40})
            assert chosen.json() == {"box": [10, 20, 30, 40]}
        assert server.wait(timeout=1) == Box(10, 20, 30, 40)


def test_waiting_for_a_box_that_never_comes_times_out(clip):
    frame = np.zeros((20, 20, 3), np.uint8)
    with BoxChooserServer(frame) as server, pytest.raises(InputError, match="no box was chosen"):
        server.wait(timeout=0.1)
    assert threading.active_count() >= 1


def test_without_a_display_the_on_screen_selector_points_to_the_headless_ways(clip, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(InputError, match="--web"):
        select_box_on_screen(clip.path)
