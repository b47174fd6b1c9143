"""Llama and its relatives (SmolLM2, Mistral, Qwen2): a decoder-only transformer with RMSNorm,
rotary position embeddings, grouped-query attention and a SwiGLU MLP.

Shapes: B batch, S new tokens, T cached + new slots, H query heads, K key/value heads
(H % K == 0), D head_dim, E hidden_size, F intermediate_size.

The family differences are configuration: Mistral adds a sliding attention window, Qwen2 adds
biases to the q/k/v projections (and may window some layers), any of them may tie the LM head
to the token embeddings or not. Module and parameter names are HF's, so checkpoints load
without renaming and ``save_pretrained`` output loads back into HF transformers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from septet.errors import ConfigError
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
from septet.transformers.rope import (
    RotaryEmbedding,
    apply_rotary,
    check_rope_scaling,
    signed_sin,
)


@dataclasses.dataclass
class LlamaConfig(ModelConfig):
    """HF LlamaConfig's fields that change the computation."""

    model_type: ClassVar[str] = "llama"

    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    attention_bias: bool = False
    mlp_bias: bool = False
    tie_word_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None and self.num_attention_heads:
            self.head_dim = self.hidden_size // self.num_attention_heads
        super().__post_init__()

    def validate(self) -> None:
        activation(self.hidden_act)  # raises ConfigError for an unknown activation
        check_rope_scaling(self.rope_scaling)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"config key 'num_attention_heads' ({self.num_attention_heads}) must be a "
                f"multiple of 'num_key_value_heads' ({self.num_key_value_heads})"
            )
        self.reject_extra("pretraining_tp", (1, None))

    @classmethod
    def normalize_dict(cls, values: dict[str, Any]) -> dict[str, Any]:
        """HF 5 writes ``rope_parameters`` (theta + scaling in one dict); older files
        ``rope_theta`` and ``rope_scaling`` (with "type" or "rope_type")."""
        parameters = values.pop("rope_parameters", None)
        if parameters is not None:
            if not isinstance(parameters, dict) or any(
                isinstance(v, dict) for v in parameters.values()
            ):
                raise ConfigError(
                    "config key 'rope_parameters' must be one dict (per-layer rope is not "
                    "supported for this family)"
                )
            parameters = dict(parameters)
            if "rope_theta" in parameters:
                values["rope_theta"] = parameters.pop("rope_theta")
            kind = parameters.pop("rope_type", parameters.pop("type", "default"))
            values["rope_scaling"] = (
                None if kind == "default" else {"rope_type": kind, **parameters}
            )
        scaling = values.get("rope_scaling")
        if isinstance(scaling, dict):
            scaling = dict(scaling)
            kind = scaling.pop("rope_type", scaling.pop("type", "default"))
            values["rope_scaling"] = None if kind == "default" else {"rope_type": kind, **scaling}
        return values

    # Which projections carry a bias: Llama ties both to ``attention_bias``, Qwen2 differs.
    @property
    def qkv_bias(self) -> bool:
        """Whether q/k/v projections have a bias."""
        return self.attention_bias

    @property
    def output_bias(self) -> bool:
        """Whether the attention output projection has a bias."""
        return self.attention_bias

    def attention_window(self, layer: int) -> int | None:
        """The sliding attention window of ``layer`` (None: attends to the whole past)."""
        return None


@dataclasses.dataclass
class MistralConfig(LlamaConfig):
    """Mistral: Llama with an optional sliding window on every layer."""

    model_type: ClassVar[str] = "mistral"

    sliding_window: int | None = None
    max_position_embeddings: int = 32768

    def attention_window(self, layer: int) -> int | None:
        return self.sliding_window


@dataclasses.dataclass
class Qwen2Config(LlamaConfig):
    """Qwen2: biased q/k/v projections, unbiased output; sliding window on chosen layers."""

    model_type: ClassVar[str] = "qwen2"

    use_sliding_window: bool = False
    sliding_window: int | None = None
    max_window_layers: int = 28
    layer_types: list[str] | None = None
    max_position_embeddings: int = 32768

    @property
    def qkv_bias(self) -> bool:
        return True

    @property
    def output_bias(self) -> bool:
        return False

    def attention_window(self, layer: int) -> int | None:
        if self.layer_types is not None:
            kind = self.layer_types[layer]
            return self.sliding_window if kind == "sliding_attention" else None
        if self.use_sliding_window and layer >= self.max_window_layers:
            return self.sliding_window
        return None


# ------------------------------------------------------------------------------------------
# Modules
# ------------------------------------------------------------------------------------------


class LlamaRMSNorm(nn.Module):
    """x / rms(x) * weight, computed in float32."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        normed = F.rms_norm(x.float(), (x.shape[-1],), None, self.eps)
        return self.weight * normed.to(x.dtype)


class LlamaAttention(nn.Module):
    """Grouped-query self-attention with rotary embeddings and an optional sliding window."""

    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        self.window = config.attention_window(layer)
        e, h, k, d = config.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim
        self.q_proj = nn.Linear(e, h * d, bias=config.qkv_bias)
        self.k_proj = nn.Linear(e, k * d, bias=config.qkv_bias)
        self.v_proj = nn.Linear(e, k * d, bias=config.qkv_bias)
        self.o_proj = nn.Linear(h * d, e, bias=config.output_bias)
        # Set by fuse_projections(): one matmul for q, k and v (fast decoding).
        self.qkv_proj: nn.Module | None = None

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: KVCache | None,
    ) -> torch.Tensor:
        b, s, _ = x.shape
        h, k, d = self.num_heads, self.num_kv_heads, self.head_dim
        cos, sin = rope  # (B, S, 1, D): rotation in the (B, S, heads, D) layout
        if self.qkv_proj is not None:
            qkv = self.qkv_proj(x)
            # q and k rotate together: one rotation for all their heads.
            qk = apply_rotary(qkv[..., : (h + k) * d].view(b, s, h + k, d), cos, sin)
            q, key = qk[:, :, :h], qk[:, :, h:]
            value = qkv[..., (h + k) * d :].view(b, s, k, d)
        else:
            q = apply_rotary(self.q_proj(x).view(b, s, h, d), cos, sin)
            key = apply_rotary(self.k_proj(x).view(b, s, k, d), cos, sin)
            value = self.v_proj(x).view(b, s, k, d)
        q, key, value = q.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
        if cache is not None:
            key, value = cache.update(self.layer, key, value)  # (B, K, T, D)
        out = F.scaled_dot_product_attention(
            q,
            key,
            value,
            attn_mask=mask,
            is_causal=mask is None and s > 1 and key.shape[2] == s,
            enable_gqa=h != k,
        )
        return self.o_proj(out.transpose(1, 2).reshape(b, s, h * d))


class LlamaMLP(nn.Module):
    """SwiGLU: down(act(gate(x)) * up(x))."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        e, f = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(e, f, bias=config.mlp_bias)
        self.up_proj = nn.Linear(e, f, bias=config.mlp_bias)
        self.down_proj = nn.Linear(f, e, bias=config.mlp_bias)
        self.act = activation(config.hidden_act)
        self.intermediate_size = f
        # Set by fuse_projections(): gate and up in one matmul.
        self.gate_up_proj: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(self.act(gate) * up)


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        self.self_attn = LlamaAttention(config, layer)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        masks: dict[int | None, torch.Tensor | None],
        cache: KVCache | None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), rope, masks[self.self_attn.window], cache)
        return x + self.mlp(self.post_attention_layernorm(x))


def _init_llama_module(model: PreTrainedModel, module: nn.Module) -> None:
    # HF Llama: normal(0, initializer_range) for linear and embedding weights, ones for norms.
    if isinstance(module, LlamaRMSNorm):
        nn.init.ones_(module.weight)
    else:
        PreTrainedModel._init_module(model, module)


class LlamaModel(PreTrainedModel):
    """Embeddings, decoder layers and the final norm; returns hidden states."""

    config_class = LlamaConfig
    base_model_prefix = "model"
    # Old checkpoints saved the rotary frequencies; they are recomputed from the config.
    ignored_checkpoint_keys: ClassVar[tuple[str, ...]] = (r"rotary_emb\.inv_freq$",)

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers)
        )
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(
            config.head_dim, config.rope_theta, config.max_position_embeddings, config.rope_scaling
        )
        self.post_init()

    def _init_module(self, module: nn.Module) -> None:
        _init_llama_module(self, module)

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """HF names and layouts (refused once quantised for decoding)."""
        refuse_if_quantized(self)
        return super().checkpoint_state_dict()

    def new_cache(self, batch_size: int, capacity: int) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences of up to ``capacity`` tokens
        (it grows beyond that if needed)."""
        c = self.config
        return KVCache(
            c.num_hidden_layers,
            batch_size,
            c.num_key_value_heads,
            c.head_dim,
            capacity,
            dtype=self.embed_tokens.weight.dtype,
            device=self.embed_tokens.weight.device,
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
        """``input_ids`` (B, S) new tokens; ``attention_mask`` (B, T) 0/1 over the cached and
        new slots (left padding allowed); returns (B, S, E) hidden states and the cache."""
        cache, past, position_ids = begin_pass(
            self, input_ids, attention_mask, position_ids, past_key_values, use_cache
        )
        b, s = input_ids.shape
        x = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(position_ids)
        rope = (cos[:, :, None], signed_sin(sin)[:, :, None])  # shared by every layer
        masks = {
            window: attention_mask_for(
                attention_mask,
                batch_size=b,
                past_length=past,
                new_length=s,
                sliding_window=window,
                device=input_ids.device,
            )
            for window in {layer.self_attn.window for layer in self.layers}
        }
        hidden: list[torch.Tensor] = [x] if output_hidden_states else []
        for layer in self.layers:
            x = layer(x, rope, masks, cache)
            if output_hidden_states:
                hidden.append(x)
        x = self.norm(x)
        if output_hidden_states:
            hidden[-1] = x  # HF reports the normed output as the last hidden state
        if cache is not None:
            cache.advance(s)
        return BaseModelOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden) if output_hidden_states else None,
            past_key_values=cache,
        )


class LlamaForCausalLM(CausalLMHead):
    """LlamaModel plus the LM head (tied to the token embeddings when the config says so)."""

    config_class = LlamaConfig
    base_model_prefix = "model"
    ignored_checkpoint_keys: ClassVar[tuple[str, ...]] = (r"rotary_emb\.inv_freq$",)
    tied_weights: ClassVar[dict[str, str]] = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def _init_module(self, module: nn.Module) -> None:
        _init_llama_module(self, module)


class LlamaForSequenceClassification(DecoderSequenceClassifier):
    """LlamaModel plus a classifier read at each sequence's last real token."""

    config_class = LlamaConfig
    base_model_prefix = "model"
    ignored_checkpoint_keys: ClassVar[tuple[str, ...]] = (r"rotary_emb\.inv_freq$",)

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.score = score_layer(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_module(self, module: nn.Module) -> None:
        _init_llama_module(self, module)


# Family members differ only by config; HF names their classes per family, so do we.
class MistralModel(LlamaModel):
    """Mistral's base model (sliding window attention)."""

    config_class = MistralConfig


class Qwen2Model(LlamaModel):
    """Qwen2's base model (q/k/v biases)."""

    config_class = Qwen2Config


class MistralForCausalLM(LlamaForCausalLM):
    """Mistral (sliding window attention)."""

    config_class = MistralConfig


class Qwen2ForCausalLM(LlamaForCausalLM):
    """Qwen2 (q/k/v biases)."""

    config_class = Qwen2Config


class MistralForSequenceClassification(LlamaForSequenceClassification):
    """Mistral with a sequence classifier."""

    config_class = MistralConfig


class Qwen2ForSequenceClassification(LlamaForSequenceClassification):
    """Qwen2 with a sequence classifier."""

    config_class = Qwen2Config
