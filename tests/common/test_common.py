"""Seeding, device choice, the septet home, lazy exports, progress."""

import random
import sys
import types

import numpy as np
import pytest

from septet.common import (
    lazy_exports,
    progress_enabled,
    seed_everything,
    septet_home,
    set_quiet,
    track,
)
from septet.errors import ConfigError


def test_seed_everything_makes_python_and_numpy_repeat():
    seed_everything(7)
    first = (random.random(), np.random.rand(3).tolist())
    seed_everything(7)
    assert (random.random(), np.random.rand(3).tolist()) == first


def test_septet_home_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPTET_HOME", str(tmp_path / "home"))
    path = septet_home("models", "minilm")
    assert path == tmp_path / "home" / "models" / "minilm"
    assert path.is_dir()


def test_septet_home_defaults_under_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("SEPTET_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert septet_home(create=False) == tmp_path / ".cache" / "septet"


def test_choose_device_honours_environment_and_rejects_unknown(monkeypatch):
    torch = pytest.importorskip("torch")
    from septet.common import choose_device

    monkeypatch.setenv("SEPTET_DEVICE", "cpu")
    assert choose_device() == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            choose_device("cuda")


def test_lazy_exports_import_on_first_use(monkeypatch):
    package = types.ModuleType("fake_part")
    submodule = types.ModuleType("fake_part.engine")
    submodule.Engine = type("Engine", (), {})
    monkeypatch.setitem(sys.modules, "fake_part", package)
    monkeypatch.setitem(sys.modules, "fake_part.engine", submodule)
    package.__getattr__, package.__dir__ = lazy_exports("fake_part", {"Engine": ".engine"})
    assert package.Engine is submodule.Engine
    assert "Engine" in package.__dir__()
    with pytest.raises(AttributeError, match="no attribute 'Missing'"):
        package.__getattr__("Missing")


def test_progress_is_silent_when_quiet_and_still_yields_everything():
    set_quiet(True)
    try:
        assert not progress_enabled()
        assert list(track(range(5), description="counting")) == [0, 1, 2, 3, 4]
    finally:
        set_quiet(False)


def test_dataclass_from_dict_names_every_unknown_key_and_the_known_ones():
    import dataclasses

    from septet.common.config import dataclass_from_dict

    @dataclasses.dataclass
    class Settings:
        rate: float = 0.1
        steps: int = 10

    assert dataclass_from_dict(Settings, {"steps": 3}, "demo") == Settings(steps=3)
    with pytest.raises(ConfigError) as raised:
        dataclass_from_dict(Settings, {"stepz": 3, "rte": 1, "rate": 2.0}, "demo")
    message = str(raised.value)
    assert message.startswith("unknown demo config key(s) 'rte', 'stepz'")
    assert "known keys: rate, steps" in message
