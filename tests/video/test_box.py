"""Boxes: parsing ``x,y,w,h``, checks against the frame, intersection over union."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from septet.errors import InputError
from septet.video.box import Box, box_from_mask, check_box_in_frame, parse_box


def test_parse_box_reads_four_numbers():
    assert parse_box("10,20,30,40") == Box(10, 20, 30, 40)
    assert parse_box(" 1.5, 2 ,3,4 ") == Box(1.5, 2, 3, 4)


@pytest.mark.parametrize("text", ["", "1,2,3", "1,2,3,4,5", "a,b,c,d", "1;2;3;4"])
def test_parse_box_rejects_what_is_not_four_numbers(text):
    with pytest.raises(InputError, match="x,y,w,h"):
        parse_box(text)


def test_parse_box_rejects_empty_size():
    with pytest.raises(InputError, match="positive"):
        parse_box("1,2,0,4")


@given(st.integers(0, 5000), st.integers(0, 5000), st.integers(1, 5000), st.integers(1, 5000))
def test_parse_box_round_trips_whole_pixels(x, y, w, h):
    box = parse_box(f"{x},{y},{w},{h}")
    assert box.as_ints() == (x, y, w, h)
    assert box.iou(box) == pytest.approx(1.0)


def test_iou_of_overlapping_and_disjoint_boxes():
    assert Box(0, 0, 10, 10).iou(Box(5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert Box(0, 0, 10, 10).iou(Box(20, 20, 5, 5)) == 0.0


def test_a_box_outside_the_frame_is_an_error_that_says_so():
    with pytest.raises(InputError, match="outside the 100x80 frame"):
        check_box_in_frame(Box(150, 10, 20, 20), 100, 80)
    with pytest.raises(InputError, match="outside"):
        check_box_in_frame(Box(90, 70, 40, 40), 100, 80)  # mostly outside


def test_a_box_slightly_over_the_edge_is_clipped():
    assert check_box_in_frame(Box(90, 10, 12, 10), 100, 80) == Box(90, 10, 10, 10)


def test_box_from_mask_is_the_tight_box():
    import numpy as np

    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:20] = True
    assert box_from_mask(mask) == Box(10, 5, 10, 4)
    assert box_from_mask(np.zeros((4, 4), bool)) is None
