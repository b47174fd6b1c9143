"""Text classification: fine-tune an encoder on JSONL data, and predict with the result.

The data is one JSON object per line: ``{"text": "...", "label": "spam"}`` for single-label
tasks (one class per text, softmax + cross-entropy), or ``{"text": "...", "labels": ["a", "b"]}``
for multi-label ones (any number of classes, sigmoid + binary cross-entropy). Labels may be
strings or integers; the label set is read from the training file, sorted.

``finetune_text_classifier`` loads a pretrained encoder with a fresh classification head,
trains it with the shared loop (septet.common.training), evaluates on the eval file, keeps the
best checkpoint by the main metric, and writes a folder that both septet and HF transformers
load: model.safetensors + config.json (with id2label) + tokenizer files + metrics.json.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from septet.common.atomic import atomic_write_json
from septet.common.config import dataclass_from_dict
from septet.common.seeding import seed_everything
from septet.common.training import (
    OptimizerConfig,
    Trainer,
    TrainingConfig,
    list_checkpoints,
    load_model_weights,
)
from septet.errors import ConfigError, InputError, NotFoundError

if TYPE_CHECKING:
    import torch

    from septet.transformers.tokenizer import Tokenizer

MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"


@dataclass(frozen=True)
class LabelledText:
    """One example: its text and its label names (exactly one for single-label data)."""

    text: str
    labels: tuple[str, ...]


@dataclass
class ClassificationData:
    """The examples of one JSONL file and whether it is multi-label."""

    examples: list[LabelledText]
    multi_label: bool

    @property
    def label_names(self) -> list[str]:
        """Every label that occurs, sorted."""
        return sorted({label for example in self.examples for label in example.labels})


def read_classification_jsonl(
    path: str | Path, *, text_field: str = "text", label_field: str | None = None
) -> ClassificationData:
    """Read ``{"text": ..., "label": ...}`` or ``{"text": ..., "labels": [...]}`` lines.
    ``label_field`` defaults to whichever of "label"/"labels" the first line has; a list
    value makes the data multi-label."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"no data file at {path}")
    examples: list[LabelledText] = []
    multi_label: bool | None = None
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise InputError(f"{where}: each line must be a JSON object")
            if label_field is None:
                label_field = next((k for k in ("label", "labels") if k in row), None)
                if label_field is None:
                    raise InputError(
                        f"{where}: no 'label' or 'labels' key; name it with label_field"
                    )
            text = row.get(text_field)
            if not isinstance(text, str):
                raise InputError(f"{where}: {text_field!r} must be a string, got {text!r}")
            if label_field not in row:
                raise InputError(f"{where}: missing the label key {label_field!r}")
            value = row[label_field]
            is_list = isinstance(value, list)
            if multi_label is None:
                multi_label = is_list
            elif multi_label != is_list:
                raise InputError(
                    f"{where}: {label_field!r} is {'a list' if is_list else 'a single value'} "
                    "here but not on earlier lines; use one form throughout"
                )
            values = value if is_list else [value]
            labels = []
            for item in values:
                if isinstance(item, bool) or not isinstance(item, (str, int)):
                    raise InputError(f"{where}: a label must be a string or integer, got {item!r}")
                labels.append(str(item))
            examples.append(LabelledText(text, tuple(dict.fromkeys(labels))))
    if not examples:
        raise InputError(f"{path} holds no examples")
    return ClassificationData(examples, bool(multi_label))


@dataclass
class FinetuneConfig:
    """What to fine-tune on what; ``training`` is the shared loop's configuration."""

    model: str
    train_file: str
    output_dir: str
    eval_file: str | None = None
    text_field: str = "text"
    label_field: str | None = None
    max_length: int = 128
    batch_size: int = 16
    eval_batch_size: int = 64
    threshold: float = 0.5  # multi-label: a class is predicted when its probability >= this
    resume: bool = False  # continue from the newest checkpoint in output_dir/checkpoints
    keep_checkpoints: bool = False  # keep output_dir/checkpoints after a finished run
    training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(
            epochs=3, optimizer=OptimizerConfig(learning_rate=5e-5, warmup_ratio=0.1)
        )
    )

    def __post_init__(self) -> None:
        if isinstance(self.training, Mapping):
            self.training = TrainingConfig.from_dict(self.training)
        if self.max_length < 2:
            raise ConfigError(f"max_length must be >= 2, got {self.max_length}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("batch_size and eval_batch_size must be >= 1")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"threshold must be in (0, 1), got {self.threshold}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FinetuneConfig:
        """Read from a plain dict (``training`` may be nested); unknown keys are errors."""
        return dataclass_from_dict(cls, values, "finetune")


@dataclass
class FinetuneResult:
    """Where the model went and how well it did."""

    output_dir: Path
    labels: list[str]
    multi_label: bool
    metrics: dict[str, float]  # on the eval file (or the training file when there is none)
    history: list[dict[str, float]]
    steps: int


def finetune_text_classifier(config: FinetuneConfig) -> FinetuneResult:
    """Fine-tune ``config.model`` for text classification; see the module docstring."""
    import torch
    from torch.utils.data import DataLoader

    from septet.transformers.auto import AutoModelForSequenceClassification
    from septet.transformers.tokenizer import Tokenizer

    train = read_classification_jsonl(
        config.train_file, text_field=config.text_field, label_field=config.label_field
    )
    labels = train.label_names
    if len(labels) < 2 and not train.multi_label:
        raise InputError(
            f"{config.train_file} has only the label {labels!r}; a classifier needs at least two"
        )
    evaluation = None
    if config.eval_file is not None:
        evaluation = read_classification_jsonl(
            config.eval_file, text_field=config.text_field, label_field=config.label_field
        )
        if evaluation.multi_label != train.multi_label:
            raise InputError("the eval file and the training file differ in single/multi-label")
        unseen = sorted(set(evaluation.label_names) - set(labels))
        if unseen:
            raise InputError(
                f"{config.eval_file} has labels the training file lacks: {', '.join(unseen[:10])}"
            )

    output_dir = Path(config.output_dir)
    # The new head's initial weights come from the global RNG: seed it first, so that a run
    # is reproducible from its configuration alone.
    seed_everything(config.training.seed, deterministic=False)
    tokenizer = Tokenizer.from_pretrained(config.model)
    problem_type = MULTI_LABEL if train.multi_label else SINGLE_LABEL
    model = AutoModelForSequenceClassification.from_pretrained(
        config.model,
        id2label=dict(enumerate(labels)),
        label2id={name: index for index, name in enumerate(labels)},
        problem_type=problem_type,
    )
    label_index = {name: index for index, name in enumerate(labels)}
    accepts = _forward_arguments(model)

    def collate(examples: Sequence[LabelledText]) -> dict[str, torch.Tensor]:
        batch = tokenizer([e.text for e in examples], truncation=True, max_length=config.max_length)
        batch = {k: v for k, v in batch.items() if k in accepts}
        batch["labels"] = _label_tensor(examples, label_index, train.multi_label)
        return batch

    train_loader = DataLoader(
        train.examples, batch_size=config.batch_size, shuffle=True, collate_fn=collate
    )
    eval_examples = (evaluation or train).examples
    eval_loader = DataLoader(eval_examples, batch_size=config.eval_batch_size, collate_fn=collate)

    def compute_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch).loss

    def evaluate(model: Any) -> dict[str, float]:
        scores, truth, losses = [], [], []
        for batch in eval_loader:
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out = model(**batch)
            losses.append(float(out.loss) * len(batch["labels"]))
            scores.append(out.logits.float().cpu())
            truth.append(batch["labels"].cpu())
        metrics = classification_metrics(
            torch.cat(scores), torch.cat(truth), train.multi_label, config.threshold
        )
        metrics["loss"] = sum(losses) / len(eval_examples)
        return metrics

    main_metric = "micro_f1" if train.multi_label else "accuracy"
    training = dataclasses.replace(
        config.training,
        checkpoint_dir=config.training.checkpoint_dir or str(output_dir / "checkpoints"),
        best_metric=config.training.best_metric or main_metric,
    )
    trainer = Trainer(model, compute_loss, train_loader, training, evaluate=evaluate)
    resume = "latest" if config.resume and list_checkpoints(training.checkpoint_dir) else None
    result = trainer.train(resume_from=resume)
    if result.best_checkpoint is not None:
        load_model_weights(model, result.best_checkpoint)
    final_metrics = next(
        (e for e in result.evaluations if e["step"] == result.state.best_step),
        result.evaluations[-1],
    )
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    metrics = {k: v for k, v in final_metrics.items() if k != "step"}
    atomic_write_json(
        output_dir / "metrics.json",
        {
            "problem_type": problem_type,
            "labels": labels,
            "train_examples": len(train.examples),
            "eval_examples": len(eval_examples),
            "evaluated_on": "eval_file" if evaluation is not None else "train_file",
            "best_step": result.state.best_step,
            "steps": result.state.step,
            "metrics": metrics,
            "history": result.history,
        },
    )
    if not config.keep_checkpoints and config.training.checkpoint_dir is None:
        # Training finished and its best weights are saved: the optimizer states are not needed.
        shutil.rmtree(training.checkpoint_dir, ignore_errors=True)
    return FinetuneResult(
        output_dir=output_dir,
        labels=labels,
        multi_label=train.multi_label,
        metrics=metrics,
        history=result.history,
        steps=result.state.step,
    )


def classification_metrics(
    logits: torch.Tensor, labels: torch.Tensor, multi_label: bool, threshold: float = 0.5
) -> dict[str, float]:
    """Single-label: accuracy and macro-F1 over the classes. Multi-label: micro- and macro-F1
    of the thresholded sigmoid, and exact match (every label of a text right)."""
    import torch

    classes = logits.shape[-1]
    if multi_label:
        predicted = torch.sigmoid(logits) >= threshold
        truth = labels >= 0.5
    else:
        predicted = torch.nn.functional.one_hot(logits.argmax(-1), classes).bool()
        truth = torch.nn.functional.one_hot(labels.long(), classes).bool()
    tp = (predicted & truth).sum(0).double()
    fp = (predicted & ~truth).sum(0).double()
    fn = (~predicted & truth).sum(0).double()
    per_class = _f1(tp, fp, fn)
    present = (tp + fn) > 0  # macro-F1 over the classes that occur in the reference
    macro = float(per_class[present].mean()) if present.any() else 0.0
    metrics = {"macro_f1": macro}
    if multi_label:
        metrics["micro_f1"] = float(_f1(tp.sum(), fp.sum(), fn.sum()))
        metrics["exact_match"] = float((predicted == truth).all(-1).double().mean())
    else:
        metrics["accuracy"] = float((predicted == truth).all(-1).double().mean())
    return metrics


def _f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    import torch

    denominator = 2 * tp + fp + fn
    return torch.where(denominator > 0, 2 * tp / denominator.clamp(min=1), torch.zeros_like(tp))


def _label_tensor(
    examples: Sequence[LabelledText], index: Mapping[str, int], multi_label: bool
) -> torch.Tensor:
    import torch

    if multi_label:
        target = torch.zeros(len(examples), len(index))
        for row, example in enumerate(examples):
            for label in example.labels:
                target[row, index[label]] = 1.0
        return target
    return torch.tensor([index[e.labels[0]] for e in examples], dtype=torch.long)


def _forward_arguments(model: Any) -> set[str]:
    """The batch keys the model's forward takes (DistilBERT has no token_type_ids)."""
    return set(inspect.signature(model.forward).parameters)


class TextClassifier:
    """A fine-tuned classifier folder, ready to label texts."""

    def __init__(self, model: Any, tokenizer: Tokenizer, *, max_length: int = 512):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        config = model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.multi_label = config.problem_type == MULTI_LABEL
        self._accepts = _forward_arguments(model)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str | None = None) -> TextClassifier:
        """Load a folder written by :func:`finetune_text_classifier` (or any HF classifier)."""
        from septet.common.device import choose_device
        from septet.transformers.auto import AutoModelForSequenceClassification
        from septet.transformers.checkpoint import read_config_dict, resolve_model_path
        from septet.transformers.tokenizer import Tokenizer

        path = resolve_model_path(path)
        # A folder without a trained classification head would load with a random one and
        # label texts at random: refuse it instead.
        architectures = read_config_dict(path).get("architectures") or []
        if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
            raise InputError(
                f"{path} is not a sequence classifier (architectures: "
                f"{', '.join(map(str, architectures)) or 'none'}); fine-tune one first with "
                "`septet transformers finetune`"
            )
        model = AutoModelForSequenceClassification.from_pretrained(
            path, device=choose_device(device)
        )
        return cls(model, Tokenizer.from_pretrained(path))

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """(N, num_labels) probabilities: softmax, or per-label sigmoid when multi-label."""
        import torch

        if isinstance(texts, str):
            raise InputError("predict_proba takes a list of texts, not one string")
        outputs = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + batch_size]),
                    truncation=True,
                    max_length=min(self.max_length, self.tokenizer.model_max_length),
                )
                batch = {k: v.to(self.model.device) for k, v in batch.items() if k in self._accepts}
                logits = self.model(**batch).logits.float()
                outputs.append(torch.sigmoid(logits) if self.multi_label else logits.softmax(-1))
        if not outputs:
            return torch.zeros(0, len(self.labels))
        return torch.cat(outputs).cpu()

    def predict(
        self, texts: Sequence[str], *, top_k: int | None = 1, threshold: float = 0.5
    ) -> list[list[tuple[str, float]]]:
        """For each text, (label, probability) pairs, most likely first: the ``top_k`` best
        (single-label), or every label at or above ``threshold`` (multi-label; then ``top_k``
        caps how many)."""
        probabilities = self.predict_proba(texts)
        results = []
        for row in probabilities:
            order = row.argsort(descending=True).tolist()
            pairs = [(self.labels[i], float(row[i])) for i in order]
            if self.multi_label:
                pairs = [p for p in pairs if p[1] >= threshold]
            results.append(pairs[:top_k] if top_k else pairs)
        return results
