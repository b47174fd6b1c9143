"""Python source corpora: the local standard library (without its tests), deduplicated files,
and a train/validation split by file (never inside a file, so validation code is unseen)."""

from __future__ import annotations

import hashlib
import sysconfig
import tokenize
from collections.abc import Iterable, Sequence
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


def find_python_files(
    root: str | Path, *, exclude_tests: bool = True, exclude_dirs: Iterable[str] = ()
) -> list[Path]:
    """Every ``.py`` file under ``root``, sorted; test folders and ``test_*.py`` left out, and
    any file under a folder named in ``exclude_dirs`` (at any depth: a held-out package is
    left out also where another package vendors it, e.g. ``pip/_vendor/rich``)."""
    root = Path(root)
    if not root.is_dir():
        raise NotFoundError(f"corpus folder {root} does not exist")
    excluded = _THIRD_PARTY_PARTS | set(exclude_dirs)
    files = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & excluded:
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


def read_corpus(
    roots: str | Path | Sequence[str | Path],
    *,
    exclude_tests: bool = True,
    exclude_dirs: Iterable[str] = (),
    max_bytes_per_package: int | None = None,
) -> list[SourceFile]:
    """The deduplicated, UTF-8 readable Python files under one or more ``roots`` (empty files
    dropped). ``max_bytes_per_package`` caps what each top-level folder of a root contributes
    (files in sorted order until the cap), so that a mixed corpus such as a site-packages
    folder is not dominated by its largest package; modules directly in a root are not capped."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    if not roots:
        raise InputError("no corpus folder given")
    if max_bytes_per_package is not None and max_bytes_per_package < 1:
        raise InputError(f"max_bytes_per_package must be >= 1, got {max_bytes_per_package}")
    seen: set[str] = set()
    out = []
    for root in roots:
        taken: dict[str, int] = {}
        for path in find_python_files(root, exclude_tests=exclude_tests, exclude_dirs=exclude_dirs):
            relative = path.relative_to(root).parts
            package = relative[0] if len(relative) > 1 else None
            if (
                package is not None
                and max_bytes_per_package is not None
                and taken.get(package, 0) >= max_bytes_per_package
            ):
                continue
            text = read_source(path)
            if text is None:
                continue
            digest = hashlib.sha1(text.encode()).hexdigest()
            if not text.strip() or digest in seen:
                continue
            seen.add(digest)
            if package is not None:
                taken[package] = taken.get(package, 0) + len(text.encode())
            out.append(SourceFile(path, text))
    if not out:
        names = ", ".join(str(r) for r in roots)
        raise InputError(f"no readable .py files under {names}")
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
