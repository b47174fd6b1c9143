"""`train_autocomplete` and `septet autocomplete train`: a self-contained model folder,
curves saved, resume from the newest checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from septet.autocomplete.completion import load_completer
from septet.autocomplete.corpus import read_corpus, split_by_file
from septet.autocomplete.training import AutocompleteTrainingConfig, train_autocomplete
from septet.errors import ConfigError, InputError, NotFoundError


def test_trained_folder_holds_everything_to_complete(tiny_model: Path) -> None:
    summary = json.loads((tiny_model / "training.json").read_text())
    assert summary["steps"] == 12 and summary["valid_loss"] > 0
    assert summary["train_files"] > summary["validation_files"] > 0
    curve = json.loads((tiny_model / "loss_curve.json").read_text())
    assert [e["step"] for e in curve["train"]] == [10, 12]  # every 10 steps and the last
    assert [e["step"] for e in curve["validation"]] == [6, 12]
    assert (
        (tiny_model / "loss_curve.csv").read_text().startswith(",".join(sorted(curve["train"][0])))
    )
    completer = load_completer(tiny_model)
    assert completer.complete("import js") is not None


def test_resume_continues_from_the_newest_checkpoint(tiny_corpus: Path, tmp_path: Path) -> None:
    config = AutocompleteTrainingConfig(
        kind="llama",
        size="tiny",
        vocab_size=400,
        seq_len=32,
        batch_size=4,
        max_steps=4,
        eval_every=2,
        checkpoint_every=2,
        eval_windows=4,
    )
    train_autocomplete(tmp_path, tiny_corpus, config)
    config.max_steps = 6
    summary = train_autocomplete(tmp_path, tiny_corpus, config, resume=True)
    assert summary["steps"] == 6
    curve = json.loads((tmp_path / "loss_curve.json").read_text())
    assert [e["step"] for e in curve["validation"]] == [2, 4, 6]  # the whole curve, both runs
    # the second run's --max-steps re-plans the decay: it ends at step 6, not at step 4
    import torch

    saved = torch.load(tmp_path / "checkpoints" / "step-00000006" / "training_state.pt")
    assert saved["scheduler"]["lr_lambdas"][0]["total_steps"] == 6


def test_init_from_starts_from_a_trained_model(
    tiny_model: Path, tiny_corpus: Path, tmp_path: Path
) -> None:
    """A new run from a trained folder keeps its tokenizer and weights (so its loss starts
    where that model ended, far under a fresh model's log(vocab))."""
    import math

    config = AutocompleteTrainingConfig(
        kind="lstm",
        size="tiny",
        vocab_size=999,  # ignored: the tokenizer comes from init_from
        seq_len=64,
        batch_size=8,
        max_steps=2,
        eval_every=2,
        checkpoint_every=2,
        eval_windows=8,
        init_from=str(tiny_model),
    )
    summary = train_autocomplete(tmp_path / "more", tiny_corpus, config)
    assert (tmp_path / "more" / "tokenizer.json").read_text() == (
        tiny_model / "tokenizer.json"
    ).read_text()
    first = json.loads((tiny_model / "training.json").read_text())["valid_loss"]
    assert summary["valid_loss"] < first + 0.2 < math.log(512)
    config.kind = "llama"
    with pytest.raises(ConfigError, match="holds a lstm model"):
        train_autocomplete(tmp_path / "other", tiny_corpus, config)


def test_split_is_by_file_and_deduplicated(tiny_corpus: Path, tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("x = 1\n")  # a duplicate
    for i in range(40):
        (tmp_path / f"f{i}.py").write_text(f"value_{i} = {i}\n")
    files = read_corpus(tmp_path)
    assert len(files) == 41
    train, valid = split_by_file(files, 0.2)
    assert {f.path for f in train}.isdisjoint({f.path for f in valid}) and valid


def test_bad_corpus_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        read_corpus(tmp_path / "missing")
    with pytest.raises(InputError, match=r"no readable \.py files"):
        read_corpus(tmp_path)
