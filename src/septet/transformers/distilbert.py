"""DistilBERT: a 6-layer distilled BERT without token types or pooler, with its own names.

The block is BERT's (post-norm, fused q/k/v through SDPA); the names are DistilBERT's
(``transformer.layer.N.attention.q_lin``, ``sa_layer_norm``, ``ffn.lin1``...). All LayerNorms
use eps 1e-12 as in the original.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from septet.errors import ConfigError
from septet.transformers.bert import FusedSelfAttention, check_input_ids
from septet.transformers.config import SUPPORTED_ACTIVATIONS, ModelConfig
from septet.transformers.encoder_heads import (
    EncoderHeadModel,
    MaskedLM,
    QuestionAnswering,
    SequenceClassification,
    TokenClassification,
)
from septet.transformers.modeling import (
    PreTrainedModel,
    fuse_projections,
    linear_activation,
    linear_residual,
    padding_mask,
    run_layer_stack,
    split_projection,
)
from septet.transformers.outputs import BaseModelOutput, QuestionAnsweringOutput

QKV_PARTS = ("q_lin", "k_lin", "v_lin")
EPS = 1e-12


@dataclasses.dataclass
class DistilBertConfig(ModelConfig):
    """DistilBERT's config.json fields (defaults: distilbert-base-uncased)."""

    model_type: ClassVar[str] = "distilbert"

    vocab_size: int = 30522
    max_position_embeddings: int = 512
    sinusoidal_pos_embds: bool = False
    n_layers: int = 6
    n_heads: int = 12
    dim: int = 768
    hidden_dim: int = 3072
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    qa_dropout: float = 0.1
    seq_classif_dropout: float = 0.2
    pad_token_id: int | None = 0

    def validate(self) -> None:
        """Reject settings this encoder does not implement."""
        self.require_choice("activation", SUPPORTED_ACTIVATIONS)
        if self.dim % self.n_heads:
            raise ConfigError(
                f"config key 'dim' ({self.dim}) must be a multiple of 'n_heads' ({self.n_heads})"
            )


class DistilBertEmbeddings(nn.Module):
    """Word + position embeddings, LayerNorm, dropout (no token types)."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.dim, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=EPS)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class DistilBertAttention(FusedSelfAttention):
    """Fused q/k/v attention plus DistilBERT's output projection ``out_lin``."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config.dim, config.n_heads, config.attention_dropout)
        self.out_lin = nn.Linear(config.dim, config.dim)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, residual: torch.Tensor
    ) -> torch.Tensor:
        """residual + out_lin(attention(x))."""
        return linear_residual(super().forward(x, mask), self.out_lin, residual)


class DistilBertFFN(nn.Module):
    """residual + dropout(lin2(activation(lin1(x))))."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.activation = config.activation
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        hidden = linear_activation(x, self.lin1, self.activation)
        return linear_residual(hidden, self.lin2, residual, self.dropout)


class TransformerBlock(nn.Module):
    """x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.attention = DistilBertAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=EPS)
        self.ffn = DistilBertFFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=EPS)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.sa_layer_norm(self.attention(x, mask, residual=x))
        return self.output_layer_norm(self.ffn(x, residual=x))


class Transformer(nn.Module):
    """The stack of blocks (HF's name for it)."""

    def __init__(self, config: DistilBertConfig):
        super().__init__()
        self.layer = nn.ModuleList(TransformerBlock(config) for _ in range(config.n_layers))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        return run_layer_stack(self.layer, x, mask, output_hidden_states)


class DistilBertPreTrainedModel(PreTrainedModel):
    """Shared loading rules of DistilBERT."""

    config_class: ClassVar[type[ModelConfig]] = DistilBertConfig
    base_model_prefix: ClassVar[str] = "distilbert"
    ignored_checkpoint_keys: ClassVar[tuple[str, ...]] = (r"embeddings\.position_ids$",)

    @classmethod
    def merge_checkpoint_tensors(
        cls, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """q_lin/k_lin/v_lin -> the fused qkv projection."""
        return fuse_projections(state_dict, QKV_PARTS, "qkv")

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """HF names: qkv split back into q_lin, k_lin and v_lin."""
        return split_projection(super().checkpoint_state_dict(), QKV_PARTS, "qkv")

    def _init_module(self, module: nn.Module) -> None:
        super()._init_module(module)
        if isinstance(module, DistilBertEmbeddings) and self.config.sinusoidal_pos_embds:
            _fill_sinusoidal(module.position_embeddings.weight)


def _fill_sinusoidal(weight: torch.Tensor) -> None:
    """Fixed sin/cos position embeddings (Vaswani et al.): even dims sin, odd dims cos."""
    n_pos, dim = weight.shape
    position = torch.arange(n_pos, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(dim) // 2) / dim
    angle = position / torch.pow(10000.0, exponent.to(torch.float64))[None, :]
    with torch.no_grad():
        weight[:, 0::2] = torch.sin(angle[:, 0::2]).to(weight.dtype)
        weight[:, 1::2] = torch.cos(angle[:, 1::2]).to(weight.dtype)
    weight.requires_grad_(False)


class DistilBertModel(DistilBertPreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, S, dim)."""

    def __init__(self, config: DistilBertConfig):
        super().__init__(config)
        self.embeddings = DistilBertEmbeddings(config)
        self.transformer = Transformer(config)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """Encode ``input_ids`` (B, S); ``attention_mask`` is 1 for tokens, 0 for padding."""
        config = self.config
        check_input_ids(
            input_ids, config.max_position_embeddings, config.vocab_size, attention_mask
        )
        x = self.embeddings(input_ids)
        x, states = self.transformer(x, padding_mask(attention_mask, x.dtype), output_hidden_states)
        return BaseModelOutput(last_hidden_state=x, hidden_states=states)


class DistilBertHeadModel(DistilBertPreTrainedModel, EncoderHeadModel):
    """The forward every DistilBERT head with ``labels`` shares: no token types, no pooler."""

    backbone_class: ClassVar[type[nn.Module]] = DistilBertModel

    def make_backbone(self, config: ModelConfig) -> nn.Module:
        """DistilBERT's body (it has no pooler to leave out)."""
        return self.backbone_class(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> Any:
        """The task's logits; with ``labels`` also its loss (-100 = ignore for token tasks)."""
        out = self.base_model(input_ids, attention_mask, output_hidden_states)
        return self.run_head(out, labels)


class DistilBertForMaskedLM(DistilBertHeadModel, MaskedLM):
    """Fill-mask: vocab_transform -> activation -> LayerNorm -> vocab_projector (tied)."""

    tied_weights: ClassVar[dict[str, str]] = {
        "vocab_projector.weight": "distilbert.embeddings.word_embeddings.weight"
    }
    new_head_keys: ClassVar[tuple[str, ...]] = (r"^vocab_",)

    def build_head(self, config: DistilBertConfig) -> None:
        """``vocab_transform``, ``vocab_layer_norm``, ``vocab_projector``."""
        self.vocab_transform = nn.Linear(config.dim, config.dim)
        self.vocab_layer_norm = nn.LayerNorm(config.dim, eps=EPS)
        self.vocab_projector = nn.Linear(config.dim, config.vocab_size)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, S, vocab) logits."""
        hidden = linear_activation(
            out.last_hidden_state, self.vocab_transform, self.config.activation
        )
        return self.vocab_projector(self.vocab_layer_norm(hidden))


class DistilBertForSequenceClassification(DistilBertHeadModel, SequenceClassification):
    """First token -> pre_classifier -> ReLU -> dropout -> classifier."""

    new_head_keys: ClassVar[tuple[str, ...]] = (r"^pre_classifier\.", r"^classifier\.")

    def build_head(self, config: DistilBertConfig) -> None:
        """``pre_classifier``, ``classifier`` and the classifier dropout."""
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier = nn.Linear(config.dim, config.num_labels)
        self.dropout = nn.Dropout(config.seq_classif_dropout)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, num_labels) logits from the first token."""
        x = torch.relu(self.pre_classifier(out.last_hidden_state[:, 0]))
        return self.classifier(self.dropout(x))


class DistilBertForTokenClassification(DistilBertHeadModel, TokenClassification):
    """Per-token labels: (B, S, num_labels) logits."""

    new_head_keys: ClassVar[tuple[str, ...]] = (r"^classifier\.",)

    def build_head(self, config: DistilBertConfig) -> None:
        """dropout and ``classifier``."""
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.dim, config.num_labels)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, S, num_labels) logits."""
        return self.classifier(self.dropout(out.last_hidden_state))


class DistilBertForQuestionAnswering(DistilBertHeadModel, QuestionAnswering):
    """Extractive QA: dropout -> qa_outputs, start and end scores for every token."""

    new_head_keys: ClassVar[tuple[str, ...]] = (r"^qa_outputs\.",)

    def build_head(self, config: DistilBertConfig) -> None:
        """dropout and ``qa_outputs``."""
        self.dropout = nn.Dropout(config.qa_dropout)
        self.qa_outputs = nn.Linear(config.dim, 2)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, S, 2) span logits."""
        return self.qa_outputs(self.dropout(out.last_hidden_state))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> QuestionAnsweringOutput:
        """Start/end logits (B, S); with both positions given, the span loss."""
        out = self.base_model(input_ids, attention_mask, output_hidden_states)
        return self.run_span_head(out, start_positions, end_positions)
