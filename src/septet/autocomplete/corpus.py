"""Python source corpora: the local standard library (without its tests), deduplicated files,
and a train/validation split by file (never inside a file, so validation code is unseen)."""

from __future__ import annotations

import hashlib
import sysconfig
import tokenize
from dataclasses import dataclass
from pathlib import Path

from septet.errors import InputError, NotFoundError

# Folders of the standard library that hold tests, test data or vendored third-party code.
_TEST_PARTS = {"test", "tests", "idle_test"}
# Installed third-party packages live under the stdlib folder too; they are never stdlib.
_THIRD_PARTY_PARTS = {"site-packages", "dist-packages", "__pycache__"}


@dataclass
class SourceFile:
    """One Python file of a corpus."""

    path: Path
    text: str


def stdlib_dir() -> Path:
    """The folder of this interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def find_python_files(root: str | Path, *, exclude_tests: bool = True) -> list[Path]:
    """Every ``.py`` file under ``root``, sorted; test folders and ``test_*.py`` left out."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"corpus folder {root} does not exist")
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & _THIRD_PARTY_PARTS:
            continue
        if exclude_tests and (parts & _TEST_PARTS or path.name.startswith("test_")):
            continue
        if path.is_file():
            files.append(path)
    return files


def read_source(path: str | Path) -> str | None:
    """A Python file's text decoded by its coding cookie (PEP 263), or None when it cannot be
    decoded (the stdlib's tests hold deliberately broken files)."""
    try:
        with tokenize.open(path) as f:
            return f.read()
    except (SyntaxError, UnicodeDecodeError, OSError):
        return None


def read_corpus(root: str | Path, *, exclude_tests: bool = True) -> list[SourceFile]:
    """The deduplicated, UTF-8 readable Python files under ``root`` (empty files dropped)."""
    seen: set[str] = set()
    out = []
    for path in find_python_files(root, exclude_tests=exclude_tests):
        text = read_source(path)
        if text is None:
            continue
        digest = hashlib.sha1(text.encode()).hexdigest()
        if not text.strip() or digest in seen:
            continue
        seen.add(digest)
        out.append(SourceFile(path, text))
    if not out:
        raise InputError(f"no readable .py files under {root}")
    return out


def split_by_file(
    files: list[SourceFile], validation_fraction: float = 0.05
) -> tuple[list[SourceFile], list[SourceFile]]:
    """(train, validation): a file goes to validation when the hash of its content says so,
    so the split is stable across machines and runs."""
    if not 0 < validation_fraction < 1:
        raise InputError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    train, valid = [], []
    for f in files:
        bucket = int(hashlib.sha1(f.text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (valid if bucket < validation_fraction else train).append(f)
    if not valid or not train:
        raise InputError(f"{len(files)} files are too few to split into train and validation")
    return train, valid
