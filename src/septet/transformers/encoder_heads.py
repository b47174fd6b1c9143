"""Task heads of the encoder families (BERT, RoBERTa, DistilBERT), written once.

A head model is an encoder body stored under the family's prefix (``bert.``, ``roberta.``,
``distilbert.``, so checkpoint keys match HF's) and a task head on top. What differs between
families is only which modules the head owns (their names are fixed by the checkpoints) and how
it reads the body's output; the task decides the loss and the output type. So a concrete class
combines three pieces:

- the family's head base (e.g. ``BertHeadModel``): the body class and the forward signature
  (BERT takes token types, DistilBERT does not);
- a task from this module (``SequenceClassification``, ``TokenClassification``, ``MaskedLM``,
  ``QuestionAnswering``): the loss and the output type;
- ``build_head`` (the modules, under HF's names) and ``head`` (body output -> logits).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from septet.transformers.config import ModelConfig
from septet.transformers.modeling import (
    PreTrainedModel,
    sequence_classification_loss,
    span_loss,
    token_classification_loss,
)
from septet.transformers.outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)


class EncoderHeadModel(PreTrainedModel):
    """An encoder body under ``base_model_prefix`` with one task head on top."""

    backbone_class: ClassVar[type[nn.Module]]
    # whether the head reads the body's pooler (BERT's sequence classifier does)
    pooled: ClassVar[bool] = False
    output_class: ClassVar[type[Any]]

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        setattr(self, self.base_model_prefix, self.make_backbone(config))
        self.build_head(config)
        self.post_init()

    def make_backbone(self, config: ModelConfig) -> nn.Module:
        """The body; families without a pooler override this."""
        return self.backbone_class(config, add_pooling_layer=self.pooled)

    def build_head(self, config: ModelConfig) -> None:
        """Create the head's modules, named as in the family's checkpoints."""
        raise NotImplementedError

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """The body's output -> the task's logits."""
        raise NotImplementedError

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The task's training loss."""
        raise NotImplementedError

    def run_head(self, out: BaseModelOutput, labels: torch.Tensor | None) -> Any:
        """Logits from the head, the loss when ``labels`` are given, as the task's output."""
        logits = self.head(out)
        loss = None if labels is None else self.task_loss(logits, labels)
        return self.output_class(logits=logits, loss=loss, hidden_states=out.hidden_states)


class SequenceClassification(EncoderHeadModel):
    """(B, num_labels) logits; the loss for the config's problem type."""

    output_class = SequenceClassifierOutput

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """MSE, cross-entropy or BCE, chosen as HF does."""
        return sequence_classification_loss(logits, labels, self.config)


class TokenClassification(EncoderHeadModel):
    """(B, S, num_labels) logits (NER, POS); cross-entropy with -100 ignored."""

    output_class = TokenClassifierOutput

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over tokens."""
        return token_classification_loss(logits, labels)


class MaskedLM(EncoderHeadModel):
    """(B, S, vocab) logits; cross-entropy on the masked positions (-100 elsewhere)."""

    output_class = MaskedLMOutput

    def task_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy over the vocabulary."""
        return masked_lm_loss(logits, labels)


class QuestionAnswering(EncoderHeadModel):
    """Extractive QA: (B, S, 2) span logits split into start and end scores."""

    output_class = QuestionAnsweringOutput

    def run_span_head(
        self,
        out: BaseModelOutput,
        start_positions: torch.Tensor | None,
        end_positions: torch.Tensor | None,
    ) -> QuestionAnsweringOutput:
        """Start/end logits; with both positions given, the span loss."""
        logits = self.head(out)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(
            start_logits=start_logits,
            end_logits=end_logits,
            loss=loss,
            hidden_states=out.hidden_states,
        )


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the vocabulary; label -100 marks unmasked tokens."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
