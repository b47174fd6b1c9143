"""Fine-tuning for text classification: reading JSONL, metrics (against scikit-learn), a real
MiniLM fine-tune on Debian package descriptions that learns, multi-label training, and output
folders that HF transformers loads with the same predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from septet.common.training import OptimizerConfig, TrainingConfig
from septet.errors import ConfigError, InputError, NotFoundError
from septet.transformers.bundled import minilm_path
from septet.transformers.finetune import (
    FinetuneConfig,
    TextClassifier,
    classification_metrics,
    finetune_text_classifier,
    read_classification_jsonl,
)

from .tiny_checkpoints import write_tiny_bert

DATA = Path(__file__).parent / "data"
# One torch thread: on a shared CPU, two spinning threads make these small runs several times
# slower (the real MiniLM fine-tune: 31 s instead of 195 s under load).
pytestmark = pytest.mark.usefixtures("one_thread")


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------
def test_reads_single_and_multi_label_files():
    single = read_classification_jsonl(DATA / "debtags_roles_train.jsonl")
    assert not single.multi_label
    assert single.label_names == ["role::documentation", "role::program", "role::shared-lib"]
    assert len(single.examples) == 42
    multi = read_classification_jsonl(DATA / "debtags_multirole_train.jsonl")
    assert multi.multi_label
    assert ("role::devel-lib", "role::program") in {e.labels for e in multi.examples}


def test_integer_labels_and_custom_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"body": "a", "y": 1}, {"body": "b", "y": 0}, ""])
    data = read_classification_jsonl(path, text_field="body", label_field="y")
    assert [e.labels for e in data.examples] == [("1",), ("0",)]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['{"text": "a", "label": "x"}', "{not json"], r"d\.jsonl:2: not valid JSON"),
        ([{"text": "a", "label": "x"}, {"text": "b", "labels": ["x"]}], "missing the label"),
        ([{"text": "a", "labels": ["x"]}, {"text": "b", "labels": "x"}], "use one form"),
        ([{"text": 3, "label": "x"}], "'text' must be a string"),
        ([{"text": "a"}], "no 'label' or 'labels'"),
        ([{"text": "a", "label": 1.5}], "string or integer"),
        ([[1, 2]], "JSON object"),
        ([], "holds no examples"),
    ],
)
def test_bad_data_names_the_line_and_problem(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(InputError, match=message):
        read_classification_jsonl(path)


def test_missing_file_and_bad_settings():
    with pytest.raises(NotFoundError):
        read_classification_jsonl("/nonexistent/train.jsonl")
    with pytest.raises(ConfigError, match="'epochs'"):
        FinetuneConfig.from_dict({"model": "m", "train_file": "t", "output_dir": "o", "epochs": 2})
    with pytest.raises(ConfigError, match="'lr'"):
        FinetuneConfig.from_dict(
            {"model": "m", "train_file": "t", "output_dir": "o", "training": {"lr": 1}}
        )


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------
def test_metrics_agree_with_scikit_learn():
    metrics_module = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 5, generator=generator)
    labels = torch.randint(0, 5, (200,), generator=generator)
    ours = classification_metrics(logits, labels, multi_label=False)
    predicted = logits.argmax(-1).numpy()
    assert ours["accuracy"] == pytest.approx(metrics_module.accuracy_score(labels, predicted))
    assert ours["macro_f1"] == pytest.approx(
        metrics_module.f1_score(labels, predicted, average="macro")
    )

    multi_truth = (torch.rand(200, 6, generator=generator) < 0.3).float()
    multi_truth[:, 5] = 0  # a class absent from the reference is left out of macro-F1
    multi_logits = torch.randn(200, 6, generator=generator) + 2 * multi_truth - 1
    ours = classification_metrics(multi_logits, multi_truth, multi_label=True)
    predicted = (torch.sigmoid(multi_logits) >= 0.5).numpy()
    assert ours["micro_f1"] == pytest.approx(
        metrics_module.f1_score(multi_truth.numpy(), predicted, average="micro")
    )
    assert ours["macro_f1"] == pytest.approx(
        metrics_module.f1_score(multi_truth[:, :5].numpy(), predicted[:, :5], average="macro")
    )
    assert ours["exact_match"] == pytest.approx(
        metrics_module.accuracy_score(multi_truth.numpy(), predicted)
    )


# ------------------------------------------------------------------------------------------
# Fine-tuning
# ------------------------------------------------------------------------------------------
def test_minilm_learns_package_roles_and_hf_loads_the_result(tmp_path, hf):
    # Given 42 real Debian package descriptions labelled program / shared library /
    # documentation, and 18 held-out ones,
    config = FinetuneConfig(
        model=str(minilm_path()),
        train_file=str(DATA / "debtags_roles_train.jsonl"),
        eval_file=str(DATA / "debtags_roles_dev.jsonl"),
        output_dir=str(tmp_path / "roles"),
        max_length=32,
        batch_size=8,
        training=TrainingConfig(
            epochs=2,
            eval_every=6,
            log_every=1,
            optimizer=OptimizerConfig(learning_rate=3e-4, warmup_ratio=0.1),
        ),
    )
    result = finetune_text_classifier(config)
    # then two epochs lift held-out accuracy far above chance (1/3),
    assert result.steps == 12
    assert result.metrics["accuracy"] >= 0.6
    losses = [entry["loss"] for entry in result.history]
    assert sum(losses[-3:]) < sum(losses[:3])
    assert not (tmp_path / "roles" / "checkpoints").exists()  # removed once training finished
    saved = json.loads((tmp_path / "roles" / "metrics.json").read_text())
    assert saved["metrics"]["accuracy"] == result.metrics["accuracy"]
    # and the folder is a classifier HF loads, with the same labels and the same logits.
    classifier = TextClassifier.from_pretrained(tmp_path / "roles")
    assert classifier.labels == result.labels and not classifier.multi_label
    texts = ["Shared library for reading PNG images", "Documentation for the foo toolkit"]
    reference = hf.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "roles"))
    assert reference.config.id2label == dict(enumerate(result.labels))
    tokenizer = hf.AutoTokenizer.from_pretrained(str(tmp_path / "roles"))
    with torch.no_grad():
        expected = reference(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(
        classifier.predict_proba(texts), expected.softmax(-1), atol=1e-5, rtol=1e-4
    )
    top = classifier.predict(texts, top_k=2)
    assert [len(pairs) for pairs in top] == [2, 2]
    assert top[0][0][1] >= top[0][1][1]


def test_multi_label_training_saves_a_multi_label_classifier(tmp_path, hf):
    model_dir = write_tiny_bert(tmp_path / "tiny", head="base")
    config = FinetuneConfig(
        model=str(model_dir),
        train_file=str(DATA / "debtags_multirole_train.jsonl"),
        output_dir=str(tmp_path / "multi"),
        max_length=48,
        training=TrainingConfig(
            epochs=3, log_every=1, optimizer=OptimizerConfig(learning_rate=3e-3)
        ),
    )
    result = finetune_text_classifier(config)
    assert result.multi_label
    assert result.labels == ["role::devel-lib", "role::plugin", "role::program"]
    assert set(result.metrics) == {"micro_f1", "macro_f1", "exact_match", "loss"}
    losses = [entry["loss"] for entry in result.history]
    assert sum(losses[-3:]) < sum(losses[:3])

    saved = json.loads((tmp_path / "multi" / "config.json").read_text())
    assert saved["problem_type"] == "multi_label_classification"
    classifier = TextClassifier.from_pretrained(tmp_path / "multi")
    assert classifier.multi_label
    texts = ["A plugin for the GIMP image editor", "Development files for libfoo"]
    reference = hf.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "multi"))
    tokenizer = hf.AutoTokenizer.from_pretrained(str(tmp_path / "multi"))
    with torch.no_grad():
        expected = reference(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    probabilities = classifier.predict_proba(texts)
    torch.testing.assert_close(probabilities, torch.sigmoid(expected), atol=1e-5, rtol=1e-4)
    for pairs, row in zip(classifier.predict(texts, top_k=None), probabilities, strict=True):
        assert [label for label, _ in pairs] == [
            label for label, p in zip(classifier.labels, row.tolist(), strict=True) if p >= 0.5
        ] or len(pairs) == int((row >= 0.5).sum())


def test_a_folder_without_a_classifier_head_is_refused():
    with pytest.raises(InputError, match=r"not a sequence classifier \(architectures: BertModel\)"):
        TextClassifier.from_pretrained(minilm_path())


def test_eval_labels_must_be_known(tmp_path):
    train = write_jsonl(
        tmp_path / "t.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]
    )
    evaluation = write_jsonl(tmp_path / "e.jsonl", [{"text": "c", "label": "z"}])
    config = FinetuneConfig(
        model=str(minilm_path()),
        train_file=str(train),
        eval_file=str(evaluation),
        output_dir=str(tmp_path / "out"),
    )
    with pytest.raises(InputError, match="labels the training file lacks: z"):
        finetune_text_classifier(config)
    one_class = write_jsonl(tmp_path / "one.jsonl", [{"text": "a", "label": "x"}])
    with pytest.raises(InputError, match="at least two"):
        finetune_text_classifier(
            FinetuneConfig(
                model=str(minilm_path()), train_file=str(one_class), output_dir=str(tmp_path)
            )
        )


def test_same_configuration_gives_the_same_model(tmp_path):
    from safetensors.torch import load_file

    base = write_tiny_bert(tmp_path / "tiny", head="base")
    weights = []
    for run in ("a", "b"):
        finetune_text_classifier(
            FinetuneConfig(
                model=str(base),
                train_file=str(DATA / "debtags_roles_train.jsonl"),
                output_dir=str(tmp_path / run),
                max_length=16,
                training=TrainingConfig(epochs=1, seed=5),
            )
        )
        weights.append(load_file(tmp_path / run / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name
