"""GPT-2: a decoder-only transformer with learned positions, pre-LayerNorm blocks and a GELU MLP.

Shapes: B batch, S new tokens, T cached + new slots, H heads, D head_dim, E n_embd.

HF stores GPT-2's projections as ``Conv1D`` weights, (in, out); this module uses
``nn.Linear``, (out, in), so the checkpoint hooks transpose those four weights on load and
back on save. Parameter names are otherwise HF's (``transformer.h.0.attn.c_attn.weight``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from septet.errors import ConfigError, InputError
from septet.transformers.causal_lm import (
    CausalLMHead,
    DecoderSequenceClassifier,
    begin_pass,
    score_layer,
)
from septet.transformers.config import ModelConfig
from septet.transformers.kv_cache import KVCache, attention_mask_for
from septet.transformers.modeling import PreTrainedModel, activation
from septet.transformers.outputs import BaseModelOutput
from septet.transformers.quantize import refuse_if_quantized

# Projections HF keeps as Conv1D (in, out); ours are nn.Linear (out, in).
_CONV1D_WEIGHT = re.compile(r"(^|\.)(c_attn|c_proj|c_fc)\.weight$")


@dataclasses.dataclass
class GPT2Config(ModelConfig):
    """HF GPT2Config's fields that change the computation."""

    model_type: ClassVar[str] = "gpt2"

    vocab_size: int = 50257
    n_positions: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None
    activation_function: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    # HF upcasts attention scores to fp32 with this flag; we always compute them in fp32 or
    # the input dtype's SDPA, which matches to rounding, so it is accepted and kept.
    reorder_and_upcast_attn: bool = False
    bos_token_id: int | None = 50256
    eos_token_id: int | list[int] | None = 50256

    def validate(self) -> None:
        activation(self.activation_function)
        if self.n_embd % self.n_head:
            raise ConfigError(
                f"config key 'n_embd' ({self.n_embd}) must be a multiple of 'n_head' "
                f"({self.n_head})"
            )
        self.reject_extra("add_cross_attention", (False, None))

    @classmethod
    def normalize_dict(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Accept HF's attribute aliases (hidden_size, num_hidden_layers, ...)."""
        aliases = {
            "hidden_size": "n_embd",
            "num_hidden_layers": "n_layer",
            "num_attention_heads": "n_head",
            "max_position_embeddings": "n_positions",
        }
        for alias, name in aliases.items():
            if alias in values and name not in values:
                values[name] = values.pop(alias)
        return values

    @property
    def hidden_size(self) -> int:
        """n_embd under the name other families use."""
        return self.n_embd


class GPT2Attention(nn.Module):
    """Causal multi-head self-attention with fused q/k/v (``c_attn``)."""

    def __init__(self, config: GPT2Config, layer: int):
        super().__init__()
        e = config.n_embd
        self.layer = layer
        self.num_heads = config.n_head
        self.head_dim = e // config.n_head
        self.c_attn = nn.Linear(e, 3 * e)
        self.c_proj = nn.Linear(e, e)
        scale = self.head_dim**-0.5 if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale /= layer + 1
        self.scale = scale

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor:
        b, s, e = x.shape
        h, d = self.num_heads, self.head_dim
        q, k, v = (
            t.view(b, s, h, d).transpose(1, 2) for t in self.c_attn(x).split(e, dim=-1)
        )  # each (B, H, S, D)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, H, T, D)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None and s > 1 and k.shape[2] == s,
            scale=self.scale,
        )  # fmt: skip
        return self.c_proj(out.transpose(1, 2).reshape(b, s, e))


class GPT2MLP(nn.Module):
    """c_proj(act(c_fc(x)))."""

    def __init__(self, config: GPT2Config):
        super().__init__()
        inner = config.n_inner or 4 * config.n_embd
        self.c_fc = nn.Linear(config.n_embd, inner)
        self.c_proj = nn.Linear(inner, config.n_embd)
        self.act = activation(config.activation_function)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class GPT2Block(nn.Module):
    """x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, config: GPT2Config, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class _GPT2Checkpoint:
    """Checkpoint hooks shared by the base and head models: Conv1D layout, stale buffers."""

    # Old checkpoints saved the causal mask buffers of every attention layer.
    ignored_checkpoint_keys: ClassVar[tuple[str, ...]] = (r"(^|\.)attn\.(masked_)?bias$",)

    @classmethod
    def convert_checkpoint_tensor(cls, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """Conv1D (in, out) -> Linear (out, in)."""
        return tensor.t().contiguous() if _CONV1D_WEIGHT.search(key) else tensor

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """HF layout: Linear weights transposed back to Conv1D, tied copies left out."""
        refuse_if_quantized(self)  # type: ignore[arg-type]
        state = PreTrainedModel.checkpoint_state_dict(self)  # type: ignore[arg-type]
        return {k: v.t() if _CONV1D_WEIGHT.search(k) else v for k, v in state.items()}


class GPT2Model(_GPT2Checkpoint, PreTrainedModel):
    """Token and position embeddings, the blocks and the final LayerNorm."""

    config_class = GPT2Config
    base_model_prefix = "transformer"

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.n_positions, config.n_embd)
        self.h = nn.ModuleList(GPT2Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.post_init()

    def new_cache(self, batch_size: int, capacity: int) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences of up to ``capacity`` tokens."""
        c = self.config
        return KVCache(
            c.n_layer,
            batch_size,
            c.n_head,
            c.n_embd // c.n_head,
            capacity,
            dtype=self.wte.weight.dtype,
            device=self.wte.weight.device,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
    ) -> BaseModelOutput:
        """``input_ids`` (B, S) new tokens; ``attention_mask`` (B, T) 0/1 over cached and
        new slots (left padding allowed); returns (B, S, E) hidden states and the cache."""
        cache, past, position_ids = begin_pass(
            self, input_ids, attention_mask, position_ids, past_key_values, use_cache
        )
        b, s = input_ids.shape
        if int(position_ids.max()) >= self.config.n_positions:
            raise InputError(
                f"GPT-2 has {self.config.n_positions} positions; position "
                f"{int(position_ids.max())} is beyond them (shorten the input)"
            )
        x = self.wte(input_ids) + self.wpe(position_ids)
        mask = attention_mask_for(
            attention_mask,
            batch_size=b,
            past_length=past,
            new_length=s,
            sliding_window=None,
            device=input_ids.device,
        )
        hidden: list[torch.Tensor] = [x] if output_hidden_states else []
        for block in self.h:
            x = block(x, mask, cache)
            if output_hidden_states:
                hidden.append(x)
        x = self.ln_f(x)
        if output_hidden_states:
            hidden[-1] = x  # HF reports the final LayerNorm's output as the last state
        if cache is not None:
            cache.advance(s)
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            past_key_values=cache,
        )


class GPT2LMHeadModel(_GPT2Checkpoint, CausalLMHead):
    """GPT2Model plus the LM head, tied to the token embeddings."""

    config_class = GPT2Config
    base_model_prefix = "transformer"
    tied_weights: ClassVar[dict[str, str]] = {"lm_head.weight": "transformer.wte.weight"}

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.post_init()


class GPT2ForSequenceClassification(_GPT2Checkpoint, DecoderSequenceClassifier):
    """GPT2Model plus a classifier read at each sequence's last real token."""

    config_class = GPT2Config
    base_model_prefix = "transformer"

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        self.transformer = GPT2Model(config)
        self.score = score_layer(config.n_embd, config.num_labels)
        self.post_init()
