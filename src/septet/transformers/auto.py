"""Choosing the model class from a checkpoint's ``model_type``, as HF's Auto classes do.

``AutoModelForSequenceClassification.from_pretrained(path)`` reads the checkpoint once, looks
up ``config.json``'s ``model_type`` (a GGUF file carries it as ``general.architecture``) and
builds the family's class for that task. The table below names classes by module and
attribute, so a family's module is imported only when a checkpoint of that family is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

from septet.errors import ConfigError

# model_type -> (module, {task: class name}); "config" names the config class.
FAMILIES: dict[str, tuple[str, dict[str, str]]] = {
    "bert": (
        ".bert",
        {
            "config": "BertConfig",
            "base": "BertModel",
            "masked_lm": "BertForMaskedLM",
            "sequence_classification": "BertForSequenceClassification",
            "token_classification": "BertForTokenClassification",
            "question_answering": "BertForQuestionAnswering",
        },
    ),
    "roberta": (
        ".roberta",
        {
            "config": "RobertaConfig",
            "base": "RobertaModel",
            "masked_lm": "RobertaForMaskedLM",
            "sequence_classification": "RobertaForSequenceClassification",
            "token_classification": "RobertaForTokenClassification",
            "question_answering": "RobertaForQuestionAnswering",
        },
    ),
    "xlm-roberta": (
        ".roberta",
        {
            "config": "XLMRobertaConfig",
            "base": "XLMRobertaModel",
            "masked_lm": "XLMRobertaForMaskedLM",
            "sequence_classification": "XLMRobertaForSequenceClassification",
            "token_classification": "XLMRobertaForTokenClassification",
            "question_answering": "XLMRobertaForQuestionAnswering",
        },
    ),
    "distilbert": (
        ".distilbert",
        {
            "config": "DistilBertConfig",
            "base": "DistilBertModel",
            "masked_lm": "DistilBertForMaskedLM",
            "sequence_classification": "DistilBertForSequenceClassification",
            "token_classification": "DistilBertForTokenClassification",
            "question_answering": "DistilBertForQuestionAnswering",
        },
    ),
    "gpt2": (
        ".gpt2",
        {
            "config": "GPT2Config",
            "base": "GPT2Model",
            "causal_lm": "GPT2LMHeadModel",
            "sequence_classification": "GPT2ForSequenceClassification",
        },
    ),
    "llama": (
        ".llama",
        {
            "config": "LlamaConfig",
            "base": "LlamaModel",
            "causal_lm": "LlamaForCausalLM",
            "sequence_classification": "LlamaForSequenceClassification",
        },
    ),
    "mistral": (
        ".llama",
        {
            "config": "MistralConfig",
            "base": "MistralModel",
            "causal_lm": "MistralForCausalLM",
            "sequence_classification": "MistralForSequenceClassification",
        },
    ),
    "qwen2": (
        ".llama",
        {
            "config": "Qwen2Config",
            "base": "Qwen2Model",
            "causal_lm": "Qwen2ForCausalLM",
            "sequence_classification": "Qwen2ForSequenceClassification",
        },
    ),
}


def _family_class(model_type: Any, task: str, asker: str) -> Any:
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise ConfigError(
            f"model_type {model_type!r} is not one septet implements; supported: "
            f"{', '.join(FAMILIES)}"
        )
    module_name, classes = FAMILIES[model_type]
    if task not in classes:
        able = [t for t, (_, c) in FAMILIES.items() if task in c]
        raise ConfigError(
            f"{asker} has no class for model_type {model_type!r}; it covers {', '.join(able)}"
        )
    module = importlib.import_module(module_name, __package__)
    found = getattr(module, classes[task], None)
    if found is None:
        raise ConfigError(
            f"{asker}: septet.transformers{module_name} has no {classes[task]} for "
            f"model_type {model_type!r} yet"
        )
    return found


def _read_model_type(config_dict: dict[str, Any] | None, source: str) -> str:
    if not config_dict or "model_type" not in config_dict:
        raise ConfigError(
            f"{source}: config.json has no 'model_type', so the architecture is unknown; "
            "load it with the family's class (e.g. BertModel.from_pretrained)"
        )
    return config_dict["model_type"]


class AutoConfig:
    """The family config class chosen by ``model_type``."""

    @staticmethod
    def from_pretrained(path_or_name: str | Path, **overrides: Any) -> Any:
        """Read config.json of a folder (or a GGUF file's metadata) into its family's config."""
        from septet.transformers.checkpoint import read_config_dict, resolve_model_path

        path = resolve_model_path(path_or_name)
        config_dict = read_config_dict(path)
        return AutoConfig.from_dict(config_dict or {}, source=str(path), **overrides)

    @staticmethod
    def from_dict(values: dict[str, Any], *, source: str = "config", **overrides: Any) -> Any:
        """A config.json dict into its family's config."""
        model_type = _read_model_type(values, source)
        return _family_class(model_type, "config", "AutoConfig").from_dict(values, **overrides)

    @staticmethod
    def for_model(model_type: str, **values: Any) -> Any:
        """A fresh config of ``model_type`` with ``values`` (e.g. for training from scratch)."""
        return _family_class(model_type, "config", "AutoConfig").from_dict(values)


class _AutoModel:
    """One task's dispatch: ``from_pretrained`` and ``from_config``."""

    task: ClassVar[str] = "base"

    def __init__(self) -> None:
        raise TypeError(f"use {type(self).__name__}.from_pretrained(path) or .from_config(config)")

    @classmethod
    def model_class(cls, model_type: str) -> Any:
        """The class this Auto class builds for ``model_type``."""
        return _family_class(model_type, cls.task, cls.__name__)

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | Path,
        *,
        dtype: Any = None,
        device: Any = None,
        allow_download: bool = False,
        **config_overrides: Any,
    ) -> Any:
        """Load a folder, weight file, GGUF file or cached Hub name into the right class."""
        from septet.transformers.checkpoint import load_checkpoint, resolve_model_path

        path = resolve_model_path(path_or_name, allow_download=allow_download)
        config_dict, state_dict = load_checkpoint(path)
        model_class = cls.model_class(_read_model_type(config_dict, str(path)))
        model = model_class.from_checkpoint(
            config_dict,
            state_dict,
            source=str(path),
            dtype=dtype,
            device=device,
            **config_overrides,
        )
        model.name_or_path = str(path_or_name)
        return model

    @classmethod
    def from_config(cls, config: Any) -> Any:
        """A freshly initialised model for ``config`` (a family config object)."""
        return cls.model_class(config.model_type)(config)


class AutoModel(_AutoModel):
    """The bare encoder or decoder (hidden states)."""

    task = "base"


class AutoModelForMaskedLM(_AutoModel):
    """Fill-mask heads (BERT, RoBERTa, DistilBERT)."""

    task = "masked_lm"


class AutoModelForCausalLM(_AutoModel):
    """Next-token heads (GPT-2, Llama, Mistral, Qwen2)."""

    task = "causal_lm"


class AutoModelForSequenceClassification(_AutoModel):
    """One label (or several) per sequence."""

    task = "sequence_classification"


class AutoModelForTokenClassification(_AutoModel):
    """One label per token."""

    task = "token_classification"


class AutoModelForQuestionAnswering(_AutoModel):
    """Extractive question answering (span start and end)."""

    task = "question_answering"
