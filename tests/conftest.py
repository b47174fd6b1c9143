"""Shared test setup: no network, no progress bars, a private SEPTET_HOME per session."""

import os

import pytest

os.environ.setdefault("SEPTET_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _private_septet_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("septet-home")
    previous = os.environ.get("SEPTET_HOME")
    os.environ["SEPTET_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("SEPTET_HOME", None)
    else:
        os.environ["SEPTET_HOME"] = previous
