"""What models return: small dataclasses with named fields, one per kind of head.

Every field that a model may not compute is ``None`` by default, so a caller reads
``out.logits`` or ``out.last_hidden_state`` the same way whatever family produced it.
``hidden_states`` (when asked for) is a tuple: the embeddings output, then each layer's output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class BaseModelOutput:
    """A base model's output: ``last_hidden_state`` is (batch, seq, hidden)."""

    last_hidden_state: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    past_key_values: Any = None
    # BERT-style pooler (tanh of a dense layer over the first token); None where the model has none.
    pooler_output: torch.Tensor | None = None


@dataclass
class MaskedLMOutput:
    """Masked language modelling: ``logits`` is (batch, seq, vocab); ``loss`` ignores label -100."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class CausalLMOutput:
    """Next-token prediction: ``logits`` is (batch, seq, vocab); labels are shifted inside."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    past_key_values: Any = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput:
    """One prediction per sequence: ``logits`` is (batch, num_labels)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class TokenClassifierOutput:
    """One prediction per token: ``logits`` is (batch, seq, num_labels)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class QuestionAnsweringOutput:
    """Extractive QA: span start and end scores, each (batch, seq)."""

    start_logits: torch.Tensor
    end_logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
