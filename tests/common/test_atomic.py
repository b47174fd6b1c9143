"""Atomic writes: the old file survives any failure; no temporary files are left behind."""

import json
import os

import pytest

from septet.common.atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def test_write_replaces_content(tmp_path):
    target = tmp_path / "model.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_failure_while_writing_leaves_old_file_intact(tmp_path):
    target = tmp_path / "weights.safetensors"
    target.write_bytes(b"the saved weights")

    class DiskFull(Exception):
        pass

    with pytest.raises(DiskFull), atomic_write(target) as handle:
        handle.write(b"half of the new wei")
        raise DiskFull

    assert target.read_bytes() == b"the saved weights"
    assert os.listdir(tmp_path) == ["weights.safetensors"]  # temp file removed


def test_unserialisable_json_raises_before_touching_the_file(tmp_path):
    target = tmp_path / "config.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}


def test_text_is_utf8_and_permissions_are_kept(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("x")
    target.chmod(0o600)
    atomic_write_text(target, "héllo, 世界")
    assert target.read_text(encoding="utf-8") == "héllo, 世界"
    assert target.stat().st_mode & 0o777 == 0o600


def test_creates_missing_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "c.json"
    atomic_write_json(target, [1, 2])
    assert json.loads(target.read_text()) == [1, 2]


def test_rejects_read_modes(tmp_path):
    with pytest.raises(ValueError, match="for writing only"), atomic_write(tmp_path / "x", "rb"):
        pass


def test_atomic_directory_replaces_the_folder_or_leaves_it_untouched(tmp_path):
    from septet.common.atomic import atomic_directory

    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError, match="crash"), atomic_directory(target) as staging:
        (staging / "a.txt").write_text("half-written")
        raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "one"  # the old folder, whole
    with atomic_directory(target) as staging:
        (staging / "b.txt").write_text("two")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced, not merged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or old copy left
