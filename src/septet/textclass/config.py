"""The one configuration file of a textclass run (TOML or JSON), in NeuralClassifier-like
sections. Every key is documented here (``doc`` metadata, rendered by :func:`config_reference`);
an unknown key, or a key that the chosen settings would ignore, is an error naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from septet.errors import ConfigError


def option(default: Any, doc: str) -> Any:
    """A dataclass field with its documentation (lists get a factory)."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass
class TaskSection:
    multi_label: bool = option(
        True,
        "true: each document has any number of labels (sigmoid outputs); false: exactly one "
        "label (multi-class; loss.name and eval.decoding then default to softmax_ce, argmax)",
    )
    hierarchical: bool = option(
        False,
        "use the label hierarchy: ancestors added to the "
        "targets, [hierarchy] options, per-level metrics",
    )


@dataclass
class DataSection:
    train: str = option("", "training data, JSONL (.gz allowed), NeuralClassifier or plain format")
    dev: str = option("", "development data: picks the best epoch and tunes thresholds")
    test: str = option("", "test data for `septet textclass eval` (optional)")
    format: str = option(
        "auto", "auto, neuralclassifier (doc_label/doc_token) or plain (text/labels)"
    )
    taxonomy: str = option(
        "",
        "taxonomy TSV (parent<TAB>child...): the label set and, when "
        "hierarchical, the hierarchy (a flat task uses its leaves); empty: the labels seen in "
        "training, with A--B--C paths forming the hierarchy when hierarchical",
    )
    ignore_labels: list = option(  # noqa: RUF009 - option() returns a field
        [], 'glob patterns of labels to drop on reading, e.g. ["*::TODO"]'
    )


@dataclass
class FeatureSection:
    fields: list = option(  # noqa: RUF009 - option() returns a field
        ["token"], "which token lists feed the encoder, concatenated: token, keyword, topic"
    )
    max_tokens: int = option(256, "tokens kept per document (the rest is cut)")
    min_token_count: int = option(2, "tokens seen fewer times in training map to <unk>")
    max_vocab_size: int = option(50000, "at most this many tokens in the vocabulary")


@dataclass
class ModelSection:
    encoder: str = option(
        "TextRCNN",
        "encoder name: FastText, TextCNN, TextRNN, TextRCNN, DRNN, "
        "DPCNN, TextVDCNN, AttentiveConvNet, RegionEmbedding, Transformer, "
        "StarTransformer, HMCN, MiniLM, NGramLinear",
    )
    params: dict = option(  # noqa: RUF009 - option() returns a field
        {},
        "the encoder's own hyper-parameters (see `septet textclass "
        "encoders`); unknown keys are errors",
    )


@dataclass
class LossSection:
    name: str = option("bce", "bce, softmax_ce or focal (softmax_ce is the multi-class loss)")
    focal_gamma: float = option(2.0, "focal loss focusing exponent (name = focal only)")
    focal_alpha: float = option(0.25, "focal loss weight of positives; < 0 disables (focal only)")
    positive_weight_power: float = option(
        0.0,
        "weigh each label's positive examples by (negatives/positives)^power, capped at 100 "
        "(bce, or NGramLinear's dual_cd solver, where it multiplies C): 0 = off, 0.5 = "
        "square root of the imbalance, 1 = balanced; trades micro-F1 for macro-F1 (rare "
        "labels)",
    )


@dataclass
class HierarchySection:
    recursive_penalty: float = option(
        1e-6,
        "weight of the recursive regularisation "
        "0.5*sum ||w_parent - w_child||^2 on the output layer",
    )
    consistent_decoding: bool = option(True, "a predicted label also predicts its ancestors")


@dataclass
class TrainSection:
    epochs: int = option(10, "maximum passes over the training data")
    batch_size: int = option(64, "documents per step")
    learning_rate: float = option(0.002, "peak learning rate (AdamW)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    schedule: str = option(
        "linear", "learning-rate schedule after warm-up: linear, cosine or constant"
    )
    warmup_ratio: float = option(0.05, "fraction of all steps spent warming up linearly")
    sparse_embeddings: bool = option(
        True,
        "large embedding tables (>= 1000 rows) get sparse gradients and a lazy Adam that "
        "updates only the rows a batch used: much faster with big vocabularies",
    )
    prior_bias: bool = option(
        True,
        "start each label's output bias at the log-odds of its training frequency (log "
        "frequency for softmax_ce) instead of 0: faster training, better rare labels",
    )
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 = off)")
    validation_fraction: float = option(
        0.1, "share of the training data held out as dev when no dev data is given (Python API)"
    )
    early_stopping: int = option(
        3, "stop after this many epochs without a better dev micro-F1 (0 = never)"
    )
    max_seconds: float = option(
        0.0, "stop training after this wall time (0 = no limit); the best checkpoint so far is kept"
    )
    max_cpu_seconds: float = option(
        0.0,
        "stop training after this much CPU time of this process (0 = no limit): a budget "
        "that, unlike max_seconds, does not shrink when other jobs share the machine",
    )
    seed: int = option(
        42, "seed of every random generator: same seed, same data, same metrics on CPU"
    )
    device: str = option("cpu", "cpu, cuda, mps or auto")
    num_threads: int = option(
        0, "CPU threads for torch (0 = torch's default); 1 is fastest on a busy shared machine"
    )
    eval_batch_size: int = option(256, "documents per step when predicting")


@dataclass
class EvalSection:
    decoding: str = option("threshold", "threshold, top_k or argmax (argmax for multi-class)")
    threshold: float = option(0.5, "probability threshold for labels without a tuned one")
    tune_thresholds: bool = option(True, "tune one threshold per label on dev for best F1")
    threshold_objective: str = option(
        "micro",
        "what tuned thresholds maximise: label (each label's F1; favours macro-F1) or micro "
        "(the overall micro-F1, label by label)",
    )
    threshold_min_support: int = option(
        5,
        "labels with fewer dev documents than this share one threshold, tuned on dev for "
        "the micro-F1 of those labels pooled (tune_thresholds only)",
    )
    top_k: int = option(3, "labels per document (decoding = top_k only)")
    selection_level: int = option(
        0,
        "hierarchies: judge each epoch (best epoch, early stopping) by the dev micro-F1 of "
        "the labels at this level only, e.g. 2 for the tags under facets; 0 = all labels",
    )
    thresholds_per_level: bool = option(
        False,
        "hierarchies: tune the thresholds of each level's labels for that level's own F1, "
        "so that the many parent labels do not steer the thresholds of their children",
    )


@dataclass
class OutputSection:
    dir: str = option(
        "textclass-run",
        "folder for checkpoints, the best model and metrics (relative to the config file)",
    )
    resume: bool = option(True, "continue from the last checkpoint in dir if there is one")


SECTIONS: dict[str, type] = {
    "task": TaskSection,
    "data": DataSection,
    "feature": FeatureSection,
    "model": ModelSection,
    "loss": LossSection,
    "hierarchy": HierarchySection,
    "train": TrainSection,
    "eval": EvalSection,
    "output": OutputSection,
}
# The sections whose keys are also TextClassifier keyword arguments.
CLASSIFIER_SECTIONS = ("feature", "loss", "hierarchy", "train", "eval")


@dataclass
class Config:
    task: TaskSection = field(default_factory=TaskSection)
    data: DataSection = field(default_factory=DataSection)
    feature: FeatureSection = field(default_factory=FeatureSection)
    model: ModelSection = field(default_factory=ModelSection)
    loss: LossSection = field(default_factory=LossSection)
    hierarchy: HierarchySection = field(default_factory=HierarchySection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    output: OutputSection = field(default_factory=OutputSection)
    base_dir: Path = field(default=Path("."), repr=False)

    def path(self, value: str) -> Path:
        """A path from the file, relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The sections as plain dicts (what the file would hold with every default)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_value(key: str, value: Any, default: Any) -> Any:
    """``value`` if it has the type of ``default``; ints are accepted for floats."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    elif isinstance(default, dict):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{key} must be a {type(default).__name__}, not {value!r}")
    return value


def make_section(name: str, values: dict[str, Any]) -> Any:
    """One section's dataclass from a dict; unknown keys and bad types name the key."""
    cls = SECTIONS[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    instance = cls()
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown key {name}.{key}{_suggest(key, list(fields))}; "
                f"[{name}] takes: {', '.join(fields)}"
            )
        setattr(instance, key, check_value(f"{name}.{key}", value, getattr(instance, key)))
    return instance


def config_from_dict(data: dict[str, Any], base_dir: Path = Path(".")) -> Config:
    """A checked Config from nested dicts (as read from TOML or JSON)."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a table/object of sections")
    sections = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise ConfigError(
                f"unknown section [{name}]{_suggest(name, list(SECTIONS))}; "
                f"the sections are: {', '.join(SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}] must be a table of keys, not {values!r}")
        sections[name] = make_section(name, values)
    config = Config(**sections, base_dir=base_dir)
    if not config.task.multi_label:
        # A multi-class task's natural loss and decoding, unless the file names others.
        if "name" not in data.get("loss", {}):
            config.loss.name = "softmax_ce"
        if "decoding" not in data.get("eval", {}):
            config.eval.decoding = "argmax"
    reject_unused(config, data)
    validate(config)
    return config


def load_config(path: str | Path) -> Config:
    """Read a ``.toml`` or ``.json`` config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except (ValueError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} cannot be parsed: {error}") from None
    return config_from_dict(data, base_dir=path.resolve().parent)


# key -> (condition under which it is used, what makes it used)
_CONDITIONAL_KEYS = {
    ("loss", "focal_gamma"): (lambda c: c.loss.name == "focal", "loss.name = 'focal'"),
    ("loss", "focal_alpha"): (lambda c: c.loss.name == "focal", "loss.name = 'focal'"),
    ("loss", "positive_weight_power"): (lambda c: c.loss.name == "bce", "loss.name = 'bce'"),
    ("eval", "top_k"): (lambda c: c.eval.decoding == "top_k", "eval.decoding = 'top_k'"),
    ("eval", "threshold_objective"): (
        lambda c: c.eval.tune_thresholds,
        "eval.tune_thresholds = true",
    ),
    ("hierarchy", "*"): (lambda c: c.task.hierarchical, "task.hierarchical = true"),
}


def reject_unused(config: Config, data: dict[str, Any]) -> None:
    """A key written in the file that the chosen settings ignore is an error, not a no-op."""
    for section, values in data.items():
        for key in values:
            rule = _CONDITIONAL_KEYS.get((section, key)) or _CONDITIONAL_KEYS.get((section, "*"))
            if rule and not rule[0](config):
                raise ConfigError(
                    f"key {section}.{key} is set but unused: it only applies when {rule[1]}; "
                    "remove it or change that setting"
                )


def validate(config: Config) -> None:
    """Checks across keys and of value ranges."""
    from septet.textclass.decoding import DECODINGS
    from septet.textclass.losses import LOSSES

    checks = [
        (config.loss.name in LOSSES, "loss.name", f"one of {', '.join(LOSSES)}"),
        (config.eval.decoding in DECODINGS, "eval.decoding", f"one of {', '.join(DECODINGS)}"),
        (
            config.eval.threshold_objective in ("label", "micro"),
            "eval.threshold_objective",
            "label or micro",
        ),
        (
            config.train.schedule in ("linear", "cosine", "constant"),
            "train.schedule",
            "linear, cosine or constant",
        ),
        (config.loss.positive_weight_power >= 0, "loss.positive_weight_power", ">= 0"),
        (config.train.epochs >= 1, "train.epochs", "at least 1"),
        (config.train.batch_size >= 1, "train.batch_size", "at least 1"),
        (config.train.learning_rate > 0, "train.learning_rate", "positive"),
        (0 <= config.train.warmup_ratio < 1, "train.warmup_ratio", "in [0, 1)"),
        (0 <= config.eval.threshold <= 1, "eval.threshold", "in [0, 1]"),
        (config.feature.max_tokens >= 1, "feature.max_tokens", "at least 1"),
        (
            set(config.feature.fields) <= {"token", "keyword", "topic"} and config.feature.fields,
            "feature.fields",
            "a non-empty list of token, keyword, topic",
        ),
        (
            config.data.format in ("auto", "neuralclassifier", "plain"),
            "data.format",
            "auto, neuralclassifier or plain",
        ),
    ]
    for ok, key, expected in checks:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(config, section), name)
            raise ConfigError(f"{key} must be {expected}, not {value!r}")
    if not config.task.multi_label and config.loss.name != "softmax_ce":
        raise ConfigError(
            f"loss.name = {config.loss.name!r} is for multi-label tasks; a multi-class task "
            "(task.multi_label = false) trains with 'softmax_ce'"
        )
    if config.model.encoder.lower() == "hmcn" and config.loss.name == "softmax_ce":
        raise ConfigError("model.encoder HMCN has sigmoid outputs; use loss.name bce or focal")


def config_reference() -> str:
    """Every section and key with its default and meaning, as Markdown."""
    lines = []
    for name, cls in SECTIONS.items():
        lines.append(f"### [{name}]\n\n| key | default | meaning |\n|---|---|---|")
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"| `{f.name}` | `{json.dumps(default)}` | {f.metadata['doc']} |")
        lines.append("")
    return "\n".join(lines)
