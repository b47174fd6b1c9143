"""What every decoder family shares around its body: input checks, the start of a forward pass
over a KV cache, the LM head with its shifted loss, and the sequence-classification head that
scores a sequence by its last real token (HF's ``*ForSequenceClassification`` for decoders).

A family defines its base model (embeddings + blocks, with ``new_cache``) and subclasses
:class:`CausalLMHead` / :class:`DecoderSequenceClassifier`, naming the base model's attribute
in ``base_model_prefix`` as HF does ("transformer" for GPT-2, "model" for Llama).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from septet.errors import InputError
from septet.transformers.kv_cache import KVCache, positions_from_mask
from septet.transformers.modeling import PreTrainedModel, sequence_classification_loss
from septet.transformers.outputs import CausalLMOutput, SequenceClassifierOutput
from septet.transformers.quantize import refuse_if_quantized


def check_input_ids(input_ids: torch.Tensor, vocab_size: int) -> tuple[int, int]:
    """(batch, seq) of a valid ``input_ids``; InputError for a wrong shape, dtype or id."""
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.long, torch.int):
        raise InputError(
            f"input_ids must be a (batch, seq) integer tensor, got {input_ids.dtype} "
            f"of shape {tuple(input_ids.shape)}"
        )
    if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab_size):
        raise InputError(
            f"input_ids holds token ids outside 0..{vocab_size - 1} (min {int(input_ids.min())}, "
            f"max {int(input_ids.max())}); the tokenizer does not match the model"
        )
    b, s = input_ids.shape
    return b, s


def begin_pass(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None,
    past_key_values: KVCache | None,
    use_cache: bool,
) -> tuple[KVCache | None, int, torch.Tensor]:
    """Check a decoder's inputs and return (cache or None, slots already cached, position ids
    of the new tokens). With ``use_cache`` and no cache given, a new one is made."""
    b, s = check_input_ids(input_ids, model.config.vocab_size)
    cache = past_key_values
    if cache is None and use_cache:
        cache = model.new_cache(b, s)
    past = cache.length if cache is not None else 0
    if cache is not None and cache.batch_size != b:
        raise InputError(f"the KV cache holds {cache.batch_size} sequences, input_ids {b}")
    if attention_mask is not None and attention_mask.shape != (b, past + s):
        raise InputError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
            f"({b}, {past + s}): one 0/1 per cached and new token"
        )
    if position_ids is None:
        position_ids = positions_from_mask(attention_mask, past, s, input_ids.device)
    return cache, past, position_ids


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of logits at t against labels at t + 1 (label -100 ignored)."""
    shifted = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    return F.cross_entropy(shifted, labels[:, 1:].reshape(-1), ignore_index=-100)


class _DecoderHead(PreTrainedModel):
    """A head over a decoder body held at ``base_model_prefix``."""

    def new_cache(self, batch_size: int, capacity: int) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences of up to ``capacity`` tokens (it
        grows beyond that if needed)."""
        return self.base_model.new_cache(batch_size, capacity)

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """HF names and layouts (refused once quantised for decoding)."""
        refuse_if_quantized(self)
        return super().checkpoint_state_dict()


class CausalLMHead(_DecoderHead):
    """The body plus ``lm_head`` (tied to the token embeddings when the config says so)."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
    ) -> CausalLMOutput:
        """Next-token logits (B, S, V) (only the last ``logits_to_keep`` positions when > 0);
        with ``labels`` (B, S), the mean cross-entropy of predicting token t+1 at t
        (label -100 ignored). ``attention_mask`` (B, T) covers cached and new tokens."""
        out = self.base_model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        x = out.last_hidden_state
        if logits_to_keep > 0:
            x = x[:, -logits_to_keep:]
        logits = self.lm_head(x)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        return CausalLMOutput(
            logits=logits,
            loss=loss,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
        )


class DecoderSequenceClassifier(_DecoderHead):
    """The body plus ``score``, a bias-free linear layer read at each sequence's last real
    token (the last one that is not the pad token, so left and right padding both work)."""

    # A plain decoder checkpoint has no classifier: it starts fresh (fine-tuning).
    new_head_keys: ClassVar[tuple[str, ...]] = (r"^score\.",)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
    ) -> SequenceClassifierOutput:
        """Logits (B, num_labels); with ``labels``, the loss for the config's problem type."""
        out = self.base_model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=output_hidden_states,
        )
        logits = self.score(out.last_hidden_state)  # (B, S, num_labels)
        b, s = input_ids.shape
        pad = self.config.pad_token_id
        if pad is None:
            if b > 1:
                raise InputError(
                    "a batch of several sequences needs the config's pad_token_id to find "
                    "each sequence's last token; set pad_token_id"
                )
            last = torch.full((b,), s - 1, device=input_ids.device)
        else:
            # HF's rule: the rightmost token that is not the pad token.
            real = (input_ids != pad).long() * torch.arange(s, device=input_ids.device)
            last = real.argmax(-1)
        pooled = logits[torch.arange(b, device=logits.device), last]
        loss = (
            sequence_classification_loss(pooled, labels, self.config)
            if labels is not None
            else None
        )
        return SequenceClassifierOutput(logits=pooled, loss=loss, hidden_states=out.hidden_states)


def score_layer(hidden_size: int, num_labels: int) -> nn.Linear:
    """The classification layer HF decoders use: no bias."""
    return nn.Linear(hidden_size, num_labels, bias=False)
