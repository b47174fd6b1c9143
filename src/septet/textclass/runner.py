"""The config-file workflow behind ``septet textclass train | eval | predict CONFIG``."""

from __future__ import annotations

import fnmatch
import json
import time
from pathlib import Path
from typing import Any

from septet.common.atomic import atomic_write_json, atomic_write_text
from septet.errors import ConfigError, InputError
from septet.textclass.config import CLASSIFIER_SECTIONS, Config, load_config
from septet.textclass.data import Document, read_documents
from septet.textclass.taxonomy import Taxonomy

MODEL_FOLDER = "model"
CHECKPOINT_FOLDER = "checkpoints"


def _config(config: Config | str | Path) -> Config:
    return config if isinstance(config, Config) else load_config(config)


def read_split(config: Config, split: str) -> list[Document]:
    """The documents of ``data.<split>``, with ``data.ignore_labels`` dropped."""
    value = getattr(config.data, split)
    if not value:
        raise ConfigError(f"data.{split} is not set in the config; give the path of a JSONL file")
    documents = read_documents(config.path(value), config.data.format)
    return drop_labels(documents, config.data.ignore_labels)


def drop_labels(documents: list[Document], patterns: list[str]) -> list[Document]:
    """Remove labels matching any glob in ``patterns`` (e.g. ``*::TODO``)."""
    if not patterns:
        return documents
    for document in documents:
        document.labels = [
            label
            for label in document.labels
            if not any(fnmatch.fnmatchcase(label, pattern) for pattern in patterns)
        ]
    return documents


def classifier_from_config(config: Config):
    """An untrained TextClassifier with the config's settings."""
    from septet.textclass.classifier import OPTIONS, TextClassifier

    options: dict[str, Any] = {}
    for name, (section, key) in OPTIONS.items():
        if section in CLASSIFIER_SECTIONS:
            options[name] = getattr(getattr(config, section), key)
    hierarchy, labels = None, None
    if config.task.hierarchical:
        hierarchy = config.path(config.data.taxonomy) if config.data.taxonomy else True
    elif config.data.taxonomy:
        taxonomy = Taxonomy.read_tsv(config.path(config.data.taxonomy))
        labels = [label for label in taxonomy.labels if taxonomy.is_leaf(label)]
    return TextClassifier(
        config.model.encoder,
        hierarchy=hierarchy,
        labels=labels,
        multi_label=config.task.multi_label,
        encoder_params=config.model.params,
        **options,
    )


def output_dir(config: Config) -> Path:
    """The run's output folder."""
    return config.path(config.output.dir)


def train_from_config(config: Config | str | Path) -> dict[str, Any]:
    """Train as the config says; save the best model (by dev micro-F1) under output.dir/model
    and its dev metrics in output.dir/metrics-dev.json. Returns a summary."""
    config = _config(config)
    train = read_split(config, "train")
    dev = read_split(config, "dev") if config.data.dev else None
    classifier = classifier_from_config(config)
    out = output_dir(config)
    started = time.perf_counter()
    classifier.fit(
        train,
        dev=(dev, None) if dev is not None else None,
        checkpoint_dir=out / CHECKPOINT_FOLDER,
        resume=config.output.resume,
    )
    seconds = time.perf_counter() - started
    classifier.save(out / MODEL_FOLDER)
    atomic_write_text(out / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
    summary = {
        "model": str(out / MODEL_FOLDER),
        "train_documents": classifier.training_["train_documents"],
        "best_epoch": classifier.training_["best_epoch"],
        "best_dev_micro_f1": classifier.training_["best_dev_micro_f1"],
        "stopped_because": classifier.training_["stopped_because"],
        "documents_per_second": classifier.training_["documents_per_second"],
        "seconds": seconds,
    }
    if dev is not None:
        metrics = classifier.evaluate(dev)
        atomic_write_json(out / "metrics-dev.json", metrics)
        summary["dev"] = metrics["flat"]
    return summary


def load_trained(config: Config):
    """The model saved by ``train`` for this config."""
    from septet.textclass.classifier import TextClassifier

    folder = output_dir(config) / MODEL_FOLDER
    if not (folder / "textclass.json").is_file():
        raise InputError(f"no trained model in {folder}; run `septet textclass train` first")
    return TextClassifier.load(folder, device=config.train.device)


def evaluate_from_config(config: Config | str | Path, split: str = "test") -> dict[str, Any]:
    """Metrics of the trained model on ``data.<split>``, written to metrics-<split>.json."""
    config = _config(config)
    if split not in ("train", "dev", "test"):
        raise ConfigError(f"split must be train, dev or test, not {split!r}")
    classifier = load_trained(config)
    metrics = classifier.evaluate(read_split(config, split))
    atomic_write_json(output_dir(config) / f"metrics-{split}.json", metrics)
    return metrics


def predict_from_config(
    config: Config | str | Path, input_path: str | Path, output_path: str | Path, *, scores: bool
) -> int:
    """Label every document of ``input_path`` (JSONL, either format); write one JSON line per
    document (``id`` if the input had one, ``labels``, and ``scores`` when asked). Returns the
    number of documents."""
    config = _config(config)
    classifier = load_trained(config)
    documents = read_documents(input_path, config.data.format)
    probabilities = classifier.predict_proba(documents)
    predictions = classifier.decode_probabilities(probabilities)
    labels = classifier.classes_
    lines = []
    for i, document in enumerate(documents):
        row: dict[str, Any] = {}
        if document.id is not None:
            row["id"] = document.id
        row["labels"] = [labels[j] for j in predictions[i].nonzero()[0]]
        if scores:
            row["scores"] = {
                labels[j]: round(float(probabilities[i, j]), 5) for j in predictions[i].nonzero()[0]
            }
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(output_path, "\n".join(lines) + ("\n" if lines else ""))
    return len(documents)
