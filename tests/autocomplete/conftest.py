"""Shared fixtures: a tiny model trained here on a few standard-library files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from septet.autocomplete.corpus import stdlib_dir

TINY_CORPUS_PACKAGES = ("json", "email", "http")


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the .py files of three stdlib packages (about 0.6 MB)."""
    root = tmp_path_factory.mktemp("corpus")
    for package in TINY_CORPUS_PACKAGES:
        for path in (stdlib_dir() / package).glob("*.py"):
            shutil.copy(path, root / f"{package}_{path.name}")
    return root


@pytest.fixture(scope="session")
def tiny_model(tiny_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LSTM trained for a few steps on the tiny corpus: real files, real loop."""
    import torch

    from septet.autocomplete.training import AutocompleteTrainingConfig, train_autocomplete

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tiny_model")
    config = AutocompleteTrainingConfig(
        kind="lstm",
        size="tiny",
        vocab_size=512,
        seq_len=64,
        batch_size=8,
        max_steps=12,
        eval_every=6,
        checkpoint_every=6,
        eval_windows=8,
    )
    train_autocomplete(out, tiny_corpus, config)
    return out
