"""Model configurations: dataclasses read from (and written back to) HF ``config.json`` dicts.

A family's config subclasses :class:`ModelConfig` and declares the fields its model reads,
typed. ``from_dict`` checks every known field's type and the family's ``validate`` rejects
settings the model code does not implement (an unknown activation, relative position
embeddings, a rope scaling type), naming the key, so a checkpoint never loads into a model
that silently computes something else. Keys the model does not read (``architectures``,
``transformers_version``, ``task_specific_params``...) are kept in ``extra`` and written back
by ``to_dict``, so a round trip through septet loses nothing.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Self

from septet.errors import ConfigError

# Activations every family implements (names as HF config.json spells them).
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")


@dataclasses.dataclass
class ModelConfig:
    """Fields shared by every family; subclasses add their own and set ``model_type``."""

    model_type: ClassVar[str] = ""

    # Labels of classification heads; ``num_labels`` is derived from ``id2label`` as in HF.
    id2label: dict[int, str] = dataclasses.field(
        default_factory=lambda: {0: "LABEL_0", 1: "LABEL_1"}
    )
    label2id: dict[str, int] | None = None
    # None: regression if num_labels == 1 else single-label; or the explicit HF names.
    problem_type: str | None = None
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    # Every config.json key this config does not interpret, kept for the round trip.
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    PROBLEM_TYPES: ClassVar[tuple[str, ...]] = (
        "regression",
        "single_label_classification",
        "multi_label_classification",
    )

    def __post_init__(self) -> None:
        self._check_types()
        if self.label2id is None:
            self.label2id = {label: index for index, label in self.id2label.items()}
        if self.problem_type is not None and self.problem_type not in self.PROBLEM_TYPES:
            raise ConfigError(
                f"config key 'problem_type' is {self.problem_type!r}; "
                f"expected one of {', '.join(self.PROBLEM_TYPES)}"
            )
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for a setting the model code does not implement (families add)."""

    @property
    def num_labels(self) -> int:
        """How many outputs a classification head has."""
        return len(self.id2label)

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> Self:
        """Build from a config.json dict; ``overrides`` must name known fields (or num_labels)."""
        known = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
        for key in overrides:
            if key not in known and key != "num_labels":
                raise ConfigError(
                    f"unknown {cls.__name__} setting {key!r}; known settings: "
                    f"{', '.join(sorted(known | {'num_labels'}))}"
                )
        merged = {**values, **overrides}
        model_type = merged.get("model_type")
        if cls.model_type and model_type not in (None, cls.model_type):
            raise ConfigError(
                f"config.json has model_type {model_type!r} but {cls.__name__} reads "
                f"{cls.model_type!r} configs; use the matching class or AutoModel"
            )
        merged = cls.normalize_dict(dict(merged))
        merged.pop("model_type", None)
        num_labels = merged.pop("num_labels", None)
        if "id2label" in merged and merged["id2label"] is not None:
            merged["id2label"] = _int_keys(merged["id2label"], "id2label")
        if num_labels is not None:
            if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
                raise ConfigError(f"config key 'num_labels' must be a positive int: {num_labels!r}")
            current = merged.get("id2label")
            if current is None or len(current) != num_labels:
                merged["id2label"] = {i: f"LABEL_{i}" for i in range(num_labels)}
                merged["label2id"] = None
        if merged.get("id2label") is None:
            merged.pop("id2label", None)
        kwargs = {k: merged.pop(k) for k in list(merged) if k in known}
        return cls(**kwargs, extra=merged)

    @classmethod
    def normalize_dict(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Hook: rename legacy or aliased keys before the fields are read (families override)."""
        return values

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> Self:
        """Read ``config.json`` from a folder (or the file itself)."""
        file = Path(path)
        if file.is_dir():
            file = file / "config.json"
        if not file.is_file():
            raise ConfigError(f"no config.json at {file}; a model folder needs one")
        try:
            values = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read {file}: {error}") from error
        if not isinstance(values, dict):
            raise ConfigError(f"{file} must hold a JSON object, not {type(values).__name__}")
        return cls.from_dict(values, **overrides)

    # -- writing -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The config.json dict (HF names, JSON types), including the kept extra keys."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name == "id2label":
                value = {str(k): v for k, v in value.items()}
            out[f.name] = value
        out["model_type"] = self.model_type
        return out

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` into ``folder`` atomically; returns its path."""
        from septet.common.atomic import atomic_write_json

        path = Path(folder) / "config.json"
        atomic_write_json(path, self.to_dict())
        return path

    # -- checks --------------------------------------------------------------------------
    def _check_types(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            hint = hints[f.name]
            if not _matches(value, hint):
                raise ConfigError(
                    f"config key {f.name!r} has value {value!r} of type {type(value).__name__}; "
                    f"expected {_describe(hint)}"
                )
            if _accepts_float(hint) and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))

    def require_choice(self, key: str, allowed: tuple[Any, ...]) -> None:
        """Raise ConfigError unless field ``key`` is one of ``allowed``."""
        value = getattr(self, key)
        if value not in allowed:
            raise ConfigError(
                f"config key {key!r} is {value!r}, which {type(self).__name__} does not "
                f"implement; supported: {', '.join(repr(a) for a in allowed)}"
            )

    def reject_extra(self, key: str, allowed: tuple[Any, ...]) -> None:
        """Raise ConfigError if HF key ``key`` (kept in ``extra``) is set to a value not in
        ``allowed``: settings that would change what HF computes and septet does not model."""
        if key in self.extra and self.extra[key] not in allowed:
            raise ConfigError(
                f"config key {key!r} is {self.extra[key]!r}; {type(self).__name__} supports "
                f"only {', '.join(repr(a) for a in allowed)}"
            )


def _int_keys(mapping: Any, key: str) -> dict[int, str]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"config key {key!r} must be an object mapping ids to labels")
    try:
        return {int(k): str(v) for k, v in mapping.items()}
    except (TypeError, ValueError) as error:
        raise ConfigError(f"config key {key!r} has a non-integer id: {error}") from error


def _accepts_float(hint: Any) -> bool:
    return hint is float or float in typing.get_args(hint)


def _matches(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list | tuple) and all(_matches(v, item) for v in value)
    if origin is dict:
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return isinstance(value, dict) and all(
            _matches(k, key_hint) and _matches(v, value_hint) for k, v in value.items()
        )
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
