"""BERT (and MiniLM, which is a BERT): a post-norm transformer encoder and its task heads.

Module names follow HF's so checkpoints map one to one, with one exception for speed: the
query, key and value projections are one fused Linear (``attention.self.qkv``, one GEMM
instead of three); loading concatenates them and saving splits them again.

Shapes: B batch, S sequence, H hidden, N heads, D = H / N.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from septet.errors import ConfigError, InputError
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

QKV_PARTS = ("query", "key", "value")


@dataclasses.dataclass
class BertConfig(ModelConfig):
    """BERT's config.json fields (defaults are bert-base-uncased's, as in HF)."""

    model_type: ClassVar[str] = "bert"

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    classifier_dropout: float | None = None
    pad_token_id: int | None = 0

    def validate(self) -> None:
        """Reject settings this encoder does not implement."""
        self.require_choice("hidden_act", SUPPORTED_ACTIVATIONS)
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"config key 'hidden_size' ({self.hidden_size}) must be a multiple of "
                f"'num_attention_heads' ({self.num_attention_heads})"
            )
        # Variants HF implements on the same classes; septet computes plain absolute-position
        # bidirectional encoders, so a checkpoint needing anything else is refused.
        self.reject_extra("position_embedding_type", ("absolute",))
        self.reject_extra("is_decoder", (False,))
        self.reject_extra("add_cross_attention", (False,))


# -- the encoder, shared with RoBERTa and DistilBERT -----------------------------------------
class FusedSelfAttention(nn.Module):
    """Multi-head self-attention with q, k and v from one projection, through SDPA."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float):
        super().__init__()
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.num_heads = num_heads
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, seq, hidden = x.shape
        # (B, S, 3H) -> 3 x (B, N, S, D)
        q, k, v = (
            linear_activation(x, self.qkv)
            .view(batch, seq, 3, self.num_heads, hidden // self.num_heads)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return out.transpose(1, 2).reshape(batch, seq, hidden)


class DenseNormOutput(nn.Module):
    """dense -> dropout -> residual add -> LayerNorm (HF's BertSelfOutput / BertOutput)."""

    def __init__(self, in_size: int, hidden_size: int, eps: float, dropout: float):
        super().__init__()
        self.dense = nn.Linear(in_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(linear_residual(x, self.dense, residual, self.dropout))


class BertAttention(nn.Module):
    """HF's layout: ``self`` (the attention) and ``output`` (projection, residual, norm)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = FusedSelfAttention(
            config.hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob
        )
        self.output = DenseNormOutput(
            config.hidden_size,
            config.hidden_size,
            config.layer_norm_eps,
            config.hidden_dropout_prob,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    """The first feed-forward projection and its activation."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.hidden_act = config.hidden_act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear_activation(x, self.dense, self.hidden_act)


class BertLayer(nn.Module):
    """One post-norm block: x = LN(x + attn(x)); x = LN(x + ffn(x))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = DenseNormOutput(
            config.intermediate_size,
            config.hidden_size,
            config.layer_norm_eps,
            config.hidden_dropout_prob,
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    """The stack of layers; ``hidden_states`` collects each layer's input and the last output."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, output_hidden_states: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        return run_layer_stack(self.layer, x, mask, output_hidden_states)


class BertEmbeddings(nn.Module):
    """Word + absolute position + token type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(
            config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # The longest input these position embeddings cover.
        self.max_tokens = config.max_position_embeddings

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Positions 0..S-1 (RoBERTa overrides: it counts from after the padding index)."""
        return torch.arange(input_ids.shape[1], device=input_ids.device)[None, :]

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.word_embeddings(input_ids)
        x = x + self.position_embeddings(self.position_ids(input_ids))
        if token_type_ids is None:
            x = x + self.token_type_embeddings.weight[0]
        else:
            x = x + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.LayerNorm(x))


class BertPooler(nn.Module):
    """tanh(dense(first token)): the sentence vector BERT's next-sentence task trained."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


def check_input_ids(
    input_ids: torch.Tensor,
    max_positions: int,
    vocab_size: int,
    attention_mask: torch.Tensor | None = None,
) -> None:
    """Raise InputError for ids a model cannot embed (wrong rank, too long, out of vocab) or
    a mask that does not match them."""
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise InputError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has "
            f"{tuple(input_ids.shape)}; they must match"
        )
    if input_ids.dim() != 2:
        raise InputError(f"input_ids must be (batch, sequence), got shape {tuple(input_ids.shape)}")
    if input_ids.shape[1] > max_positions:
        raise InputError(
            f"sequence of {input_ids.shape[1]} tokens is longer than the model's "
            f"{max_positions} positions; truncate the input (e.g. truncation=True)"
        )
    if input_ids.numel() and (int(input_ids.max()) >= vocab_size or int(input_ids.min()) < 0):
        raise InputError(
            f"input_ids hold ids outside the vocabulary [0, {vocab_size}); "
            "was the text encoded with this model's tokenizer?"
        )


# -- models ---------------------------------------------------------------------------------
class BertPreTrainedModel(PreTrainedModel):
    """Shared loading rules of the BERT family."""

    config_class: ClassVar[type[ModelConfig]] = BertConfig
    base_model_prefix: ClassVar[str] = "bert"
    # Buffers older HF versions saved in checkpoints (all-MiniLM-L6-v2 has position_ids).
    ignored_checkpoint_keys: ClassVar[tuple[str, ...]] = (
        r"embeddings\.position_ids$",
        r"embeddings\.token_type_ids$",
        # Next-sentence prediction of BertForPreTraining checkpoints (bert-base-uncased).
        r"^cls\.seq_relationship\.",
    )

    @classmethod
    def rename_checkpoint_key(cls, key: str) -> str | None:
        """Legacy gamma/beta, and the MLM decoder bias HF ties to ``predictions.bias``."""
        key = super().rename_checkpoint_key(key) or key
        return key.replace("cls.predictions.decoder.bias", "cls.predictions.bias")

    @classmethod
    def merge_checkpoint_tensors(
        cls, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """query/key/value -> the fused qkv projection."""
        return fuse_projections(state_dict, QKV_PARTS, "qkv")

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """HF names: qkv split back into query, key and value."""
        return split_projection(super().checkpoint_state_dict(), QKV_PARTS, "qkv")


class BertModel(BertPreTrainedModel):
    """The bare encoder: ``last_hidden_state`` (B, S, H) and, if present, ``pooler_output``."""

    # sentence-transformers checkpoints (MiniLM) have no pooler: then it is left out.
    optional_modules: ClassVar[tuple[str, ...]] = ("pooler",)

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.embeddings = self.make_embeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def make_embeddings(self, config: BertConfig) -> BertEmbeddings:
        """The embedding module (RoBERTa overrides)."""
        return BertEmbeddings(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """Encode ``input_ids`` (B, S); ``attention_mask`` is 1 for tokens, 0 for padding."""
        config = self.config
        check_input_ids(input_ids, self.embeddings.max_tokens, config.vocab_size, attention_mask)
        x = self.embeddings(input_ids, token_type_ids)
        mask = padding_mask(attention_mask, x.dtype)
        x, states = self.encoder(x, mask, output_hidden_states)
        pooled = self.pooler(x) if self.pooler is not None else None
        return BaseModelOutput(last_hidden_state=x, hidden_states=states, pooler_output=pooled)


class BertPredictionHeadTransform(nn.Module):
    """dense -> activation -> LayerNorm, before the vocabulary projection."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.hidden_act = config.hidden_act
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(linear_activation(x, self.dense, self.hidden_act))


class BertLMPredictionHead(nn.Module):
    """Transform, then project onto the vocabulary (decoder weight tied to the embeddings)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(x), self.decoder.weight, self.bias)


class BertOnlyMLMHead(nn.Module):
    """HF's ``cls`` wrapper, kept for the checkpoint names ``cls.predictions.*``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictions(x)


def head_dropout(config: BertConfig) -> float:
    """HF's rule: ``classifier_dropout`` if set, else the hidden dropout."""
    if config.classifier_dropout is not None:
        return config.classifier_dropout
    return config.hidden_dropout_prob


class BertHeadModel(BertPreTrainedModel, EncoderHeadModel):
    """The forward every BERT-family head with ``labels`` shares (RoBERTa's too, with its own
    body as ``backbone_class``, kept under the family's prefix so checkpoint keys match)."""

    backbone_class: ClassVar[type[nn.Module]] = BertModel

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> Any:
        """The task's logits; with ``labels`` also its loss (-100 = ignore for token tasks)."""
        out = self.base_model(input_ids, attention_mask, token_type_ids, output_hidden_states)
        return self.run_head(out, labels)


class BertForMaskedLM(BertHeadModel, MaskedLM):
    """Fill-mask: vocabulary logits for every position."""

    tied_weights: ClassVar[dict[str, str]] = {
        "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight"
    }
    new_head_keys: ClassVar[tuple[str, ...]] = (r"^cls\.",)

    def build_head(self, config: BertConfig) -> None:
        """``cls.predictions``: transform, then the tied vocabulary projection."""
        self.cls = BertOnlyMLMHead(config)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, S, vocab) logits."""
        return self.cls(out.last_hidden_state)


class BertForSequenceClassification(BertHeadModel, SequenceClassification):
    """Pooled first token -> dropout -> linear: (B, num_labels) logits."""

    new_head_keys: ClassVar[tuple[str, ...]] = (r"^classifier\.", r"^bert\.pooler\.")
    pooled: ClassVar[bool] = True

    def build_head(self, config: BertConfig) -> None:
        """dropout and ``classifier``."""
        self.dropout = nn.Dropout(head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, num_labels) logits from the pooler."""
        return self.classifier(self.dropout(out.pooler_output))


class BertForTokenClassification(BertHeadModel, TokenClassification):
    """Per-token labels (NER, POS): (B, S, num_labels) logits."""

    new_head_keys: ClassVar[tuple[str, ...]] = (r"^classifier\.",)

    def build_head(self, config: BertConfig) -> None:
        """dropout and ``classifier``."""
        self.dropout = nn.Dropout(head_dropout(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, S, num_labels) logits."""
        return self.classifier(self.dropout(out.last_hidden_state))


class BertForQuestionAnswering(BertPreTrainedModel, QuestionAnswering):
    """Extractive QA: start and end scores for every token (RoBERTa reuses it, as above)."""

    new_head_keys: ClassVar[tuple[str, ...]] = (r"^qa_outputs\.",)
    backbone_class: ClassVar[type[nn.Module]] = BertModel

    def build_head(self, config: BertConfig) -> None:
        """``qa_outputs``: hidden -> (start, end)."""
        self.qa_outputs = nn.Linear(config.hidden_size, 2)

    def head(self, out: BaseModelOutput) -> torch.Tensor:
        """(B, S, 2) span logits."""
        return self.qa_outputs(out.last_hidden_state)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> QuestionAnsweringOutput:
        """Start/end logits (B, S); with both positions given, the span loss."""
        out = self.base_model(input_ids, attention_mask, token_type_ids, output_hidden_states)
        return self.run_span_head(out, start_positions, end_positions)
