"""``septet textclass train | eval | predict CONFIG`` on the toy files, through the real CLI."""

import json

import pytest

from septet.cli import main


def run(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def write_config(tmp_path, toy_files, extra=""):
    config = tmp_path / "run.toml"
    config.write_text(
        f"""
[task]
hierarchical = true

[data]
train = "{toy_files["train"].name}"
dev = "{toy_files["dev"].name}"
test = "{toy_files["test"].name}"
taxonomy = "{toy_files["taxonomy"].name}"

[feature]
min_token_count = 1

[model]
encoder = "TextCNN"
[model.params]
embedding_dim = 32
num_filters = 16

[train]
epochs = 5
batch_size = 16
learning_rate = 0.01
num_threads = 1

[output]
dir = "out"
{extra}
"""
    )
    return config


def test_train_eval_predict(tmp_path, toy_files, capsys):
    config = write_config(tmp_path, toy_files)
    code, out, _ = run(["textclass", "train", str(config)], capsys)
    assert code == 0 and "best epoch" in out and "dev: micro_f1" in out
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()

    code, out, _ = run(["textclass", "eval", str(config)], capsys)
    assert code == 0 and "test level 2:" in out
    metrics = json.loads((tmp_path / "out" / "metrics-test.json").read_text())
    assert metrics["flat"]["micro_f1"] >= 0.95
    assert {"macro_f1", "macro_f1_harmonic"} <= set(metrics["levels"]["2"])

    inputs = tmp_path / "new.jsonl"
    inputs.write_text(json.dumps({"id": "d1", "text": "kernel distro bash kernel systemd"}) + "\n")
    code, out, _ = run(
        [
            "textclass",
            "predict",
            str(config),
            "-i",
            str(inputs),
            "-o",
            str(tmp_path / "p.jsonl"),
            "--scores",
        ],
        capsys,
    )
    assert code == 0
    row = json.loads((tmp_path / "p.jsonl").read_text())
    assert row["id"] == "d1" and row["labels"] == ["tech", "tech--linux"]
    assert set(row["scores"]) == {"tech", "tech--linux"}


def test_a_bad_key_is_one_line_naming_it(tmp_path, toy_files, capsys):
    config = write_config(tmp_path, toy_files, extra="[loss]\nfocal_gamma = 1.0\n")
    code, _, err = run(["textclass", "train", str(config)], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        "error: key loss.focal_gamma is set but unused: it only applies when "
        "loss.name = 'focal'; remove it or change that setting"
    ]


def test_keys_and_encoders_list_everything(capsys):
    code, out, _ = run(["textclass", "keys"], capsys)
    assert code == 0 and "| `recursive_penalty` |" in out
    code, out, _ = run(["textclass", "encoders"], capsys)
    assert code == 0 and out.count("\n") >= 12 and "StarTransformer:" in out


def test_ngram_linear_svm_trains_and_evaluates_from_a_config(tmp_path, toy_files, capsys):
    config = write_config(tmp_path, toy_files)
    text = config.read_text().replace(
        'encoder = "TextCNN"\n[model.params]\nembedding_dim = 32\nnum_filters = 16',
        'encoder = "NGramLinear"\n[model.params]\nbigram_buckets = 1000\nsolver = "dual_cd"\n'
        "c = 2.0\n\n[hierarchy]\nrecursive_penalty = 0.0\n\n[eval]\nselection_level = 2\n"
        "thresholds_per_level = true",
    )
    config.write_text(text)
    code, out, err = run(["textclass", "train", str(config)], capsys)
    assert code == 0 and "best epoch" in out, err
    code, _, _ = run(["textclass", "eval", str(config)], capsys)
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics-test.json").read_text())
    assert metrics["levels"]["2"]["micro_f1"] >= 0.9
