"""RoBERTa: BERT's encoder with positions counted after the padding index and its own heads.

Differences from BERT that change outputs: a token's position is (number of non-pad tokens
up to and including it) + pad_token_id, and pads get position pad_token_id; the MLM head
always uses exact GELU; the classification head is dense -> tanh -> out_proj on ``<s>``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from septet.transformers.bert import (
    BertConfig,
    BertEmbeddings,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    BertPreTrainedModel,
    head_dropout,
)
from septet.transformers.config import ModelConfig
from septet.transformers.modeling import linear_activation
from septet.transformers.outputs import BaseModelOutput


@dataclasses.dataclass
class RobertaConfig(BertConfig):
    """RoBERTa's config.json: BERT's fields, RoBERTa's special token ids."""

    model_type: ClassVar[str] = "roberta"

    pad_token_id: int | None = 1
    bos_token_id: int | None = 0
    eos_token_id: int | list[int] | None = 2

    def validate(self) -> None:
        """BERT's checks, and a pad id (positions are counted from it)."""
        super().validate()
        if self.pad_token_id is None:
            from septet.errors import ConfigError

            raise ConfigError(
                "config key 'pad_token_id' must be set for RoBERTa: positions start after it"
            )


class RobertaEmbeddings(BertEmbeddings):
    """BERT's embeddings with RoBERTa's position numbering."""

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=self.padding_idx
        )
        self.max_tokens = config.max_position_embeddings - self.padding_idx - 1

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """pad -> padding_idx; the i-th real token -> padding_idx + i (from 1)."""
        real = input_ids.ne(self.padding_idx).to(torch.long)
        return torch.cumsum(real, dim=1) * real + self.padding_idx


class RobertaPreTrainedModel(BertPreTrainedModel):
    """RoBERTa's checkpoint names: the ``roberta.`` prefix and ``lm_head``."""

    config_class: ClassVar[type[ModelConfig]] = RobertaConfig
    base_model_prefix: ClassVar[str] = "roberta"

    @classmethod
    def rename_checkpoint_key(cls, key: str) -> str | None:
        """Legacy gamma/beta, and the LM decoder bias HF ties to ``lm_head.bias``."""
        key = super().rename_checkpoint_key(key) or key
        return key.replace("lm_head.decoder.bias", "lm_head.bias")


class RobertaModel(RobertaPreTrainedModel, BertModel):
    """The bare RoBERTa encoder."""

    def make_embeddings(self, config: BertConfig) -> BertEmbeddings:
        """RoBERTa's position numbering."""
        return RobertaEmbeddings(config)


class RobertaLMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> vocabulary projection (tied to the word embeddings)."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_norm(linear_activation(x, self.dense, "gelu"))
        return F.linear(x, self.decoder.weight, self.bias)


class RobertaClassificationHead(nn.Module):
    """``<s>`` -> dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(head_dropout(config))
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(hidden[:, 0])))
        return self.out_proj(self.dropout(x))


class RobertaForMaskedLM(RobertaPreTrainedModel, BertForMaskedLM):
    """Fill-mask: vocabulary logits for every position, through ``lm_head``."""

    tied_weights: ClassVar[dict[str, str]] = {
        "lm_head.decoder.weight": "roberta.embeddings.word_embeddings.weight"
    }
    new_head_keys: ClassVar[tuple[str, ...]] = (r"^lm_head\.",)
    backbone_class = RobertaModel

    def build_head(self, config: RobertaConfig) -> None:
        """``lm_head``: dense -> GELU -> LayerNorm -> tied projection."""
        self.lm_head = RobertaLMHead(config)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, S, vocab) logits."""
        return self.lm_head(out.last_hidden_state)


class RobertaForSequenceClassification(RobertaPreTrainedModel, BertForSequenceClassification):
    """(B, num_labels) logits from the ``<s>`` token through the classification head."""

    new_head_keys: ClassVar[tuple[str, ...]] = (r"^classifier\.",)
    backbone_class = RobertaModel
    pooled = False

    def build_head(self, config: RobertaConfig) -> None:
        """``classifier``: RoBERTa's two-layer head."""
        self.classifier = RobertaClassificationHead(config)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, num_labels) logits from ``<s>``."""
        return self.classifier(out.last_hidden_state)


class RobertaForTokenClassification(RobertaPreTrainedModel, BertForTokenClassification):
    """Per-token labels: (B, S, num_labels) logits; BERT's head over the RoBERTa body."""

    backbone_class = RobertaModel


class RobertaForQuestionAnswering(RobertaPreTrainedModel, BertForQuestionAnswering):
    """Extractive QA: start and end scores for every token; BERT's head over the RoBERTa body."""

    backbone_class = RobertaModel


# -- XLM-RoBERTa: the same network, its own model_type (a multilingual SentencePiece vocab) --
@dataclasses.dataclass
class XLMRobertaConfig(RobertaConfig):
    """XLM-RoBERTa's config.json: RoBERTa's fields under model_type "xlm-roberta"."""

    model_type: ClassVar[str] = "xlm-roberta"


class XLMRobertaModel(RobertaModel):
    """The bare XLM-RoBERTa encoder."""

    config_class: ClassVar[type[ModelConfig]] = XLMRobertaConfig


class XLMRobertaForMaskedLM(RobertaForMaskedLM):
    """XLM-RoBERTa fill-mask."""

    config_class: ClassVar[type[ModelConfig]] = XLMRobertaConfig


class XLMRobertaForSequenceClassification(RobertaForSequenceClassification):
    """XLM-RoBERTa sequence classification."""

    config_class: ClassVar[type[ModelConfig]] = XLMRobertaConfig


class XLMRobertaForTokenClassification(RobertaForTokenClassification):
    """XLM-RoBERTa token classification."""

    config_class: ClassVar[type[ModelConfig]] = XLMRobertaConfig


class XLMRobertaForQuestionAnswering(RobertaForQuestionAnswering):
    """XLM-RoBERTa extractive QA."""

    config_class: ClassVar[type[ModelConfig]] = XLMRobertaConfig
