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


def test_corpus_folders_exclusions_and_package_cap(tmp_path: Path) -> None:
    """Several roots are read as one corpus; an excluded folder is left out at any depth
    (also where another package vendors it); each top-level package contributes at most the
    cap (whole files in sorted order), loose modules are never capped."""
    stdlib, site = tmp_path / "lib", tmp_path / "site"
    for folder, files in {
        stdlib: {"os_like.py": "import sys\n"},
        site: {
            "six.py": "x = 1\n" * 50,  # a loose module: not capped
            "big/a.py": "a = 1\n" * 10,  # 60 bytes
            "big/b.py": "b = 2\n" * 10,  # 60 bytes: reaches the cap of 100 (whole file)
            "big/c.py": "c = 3\n" * 10,  # over the cap: left out
            "rich/text.py": "held = 'out'\n",
            "pip/_vendor/rich/console.py": "vendored = 'held out'\n",
            "pip/ok.py": "fine = True\n",
        },
    }.items():
        for name, text in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
    files = read_corpus([stdlib, site], exclude_dirs=["rich"], max_bytes_per_package=100)
    names = sorted(str(f.path.relative_to(tmp_path)) for f in files)
    assert names == [
        "lib/os_like.py",
        "site/big/a.py",
        "site/big/b.py",
        "site/pip/ok.py",
        "site/six.py",
    ]
    assert len(read_corpus([stdlib, site])) == 8
    with pytest.raises(InputError, match="max_bytes_per_package"):
        read_corpus(site, max_bytes_per_package=0)


def test_windows_are_reshuffled_every_epoch_and_replayed_from_the_generator() -> None:
    import torch

    from septet.autocomplete.training import ShuffledWindows

    windows = torch.arange(10 * 3, dtype=torch.int32).view(10, 3)
    data = ShuffledWindows(windows, batch_size=4, seed=0)
    assert len(data) == 3
    first = list(data)
    state = data.generator.get_state()
    second = list(data)
    assert [b.shape[0] for b in first] == [4, 4, 2] and first[0].dtype == torch.long
    for epoch in (first, second):  # every window exactly once per epoch
        assert sorted(torch.cat(epoch)[:, 0].tolist()) == list(range(0, 30, 3))
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    data.generator.set_state(state)  # what a resumed run does at an epoch's start
    assert all(torch.equal(a, b) for a, b in zip(list(data), second, strict=True))


def test_schedule_is_fitted_to_the_time_allowed() -> None:
    from septet.autocomplete.training import steps_that_fit

    # 100 s allowed, 10 kept for the end, 20 used: 70 s left at 0.5 s a step = 140 more
    assert (
        steps_that_fit(
            50, seconds_per_step=0.5, seconds_used=20, seconds_allowed=100, max_steps=10_000
        )
        == 190
    )
    assert (
        steps_that_fit(  # the reserve is at most 30 s
            50, seconds_per_step=1.0, seconds_used=0, seconds_allowed=1000, max_steps=10_000
        )
        == 1020
    )
    assert (
        steps_that_fit(
            50, seconds_per_step=0.5, seconds_used=20, seconds_allowed=100, max_steps=120
        )
        == 120
    )
    assert (
        steps_that_fit(  # out of time: stop after the next step
            50, seconds_per_step=0.5, seconds_used=99, seconds_allowed=100, max_steps=10_000
        )
        == 51
    )


def test_model_sizes_fit_the_package_and_unknown_sizes_are_errors() -> None:
    from septet.autocomplete.models import MODEL_SIZES, build_model

    for kind, sizes in MODEL_SIZES.items():
        for size in sizes:
            model = build_model(kind, 4096, size)
            assert 2 * sum(p.numel() for p in model.parameters()) <= 20e6  # float16 bytes
    with pytest.raises(ConfigError, match="no size 'huge'; use one of tiny, small, medium"):
        build_model("llama", 4096, "huge")
    with pytest.raises(ConfigError, match="not one of lstm, llama"):
        build_model("gru", 4096)


def test_max_minutes_fits_the_decay_into_the_time(
    tiny_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --max-minutes the run ends on time with its learning rate decayed, long before
    --max-steps: the schedule is re-planned from the measured step rate (a fake clock here,
    0.1 s per reading, two readings per step)."""
    import time
    import types

    import septet.autocomplete.training as training

    now = [1000.0]

    def fake_time() -> float:
        now[0] += 0.1
        return now[0]

    clock = types.SimpleNamespace(time=fake_time, strftime=time.strftime, gmtime=time.gmtime)
    monkeypatch.setattr(training, "time", clock)
    config = AutocompleteTrainingConfig(
        kind="llama",
        size="tiny",
        vocab_size=300,
        seq_len=16,
        batch_size=2,
        learning_rate=1e-3,
        max_steps=100_000,
        max_minutes=1.0,
        eval_every=100_000,
        checkpoint_every=100_000,
        eval_windows=2,
    )
    summary = train_autocomplete(tmp_path, tiny_corpus, config)
    assert 100 < summary["steps"] < 400  # ~0.2 s a step in 60 s, minus the reserve
    curve = json.loads((tmp_path / "loss_curve.json").read_text())["train"]
    peak = max(entry["learning_rate"] for entry in curve)
    assert curve[-1]["learning_rate"] < 0.2 * peak  # decayed to near the floor (0.1), not cut off
