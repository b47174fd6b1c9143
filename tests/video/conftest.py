"""Fixtures of the video tests: the composite clip of ``helpers.make_clip``, made once."""

import pytest

from .helpers import Clip, make_clip


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Clip:
    return make_clip(tmp_path_factory.mktemp("clip") / "composite.avi")
