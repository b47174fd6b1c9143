"""Attention encoders: Transformer, Star-Transformer and AttentiveConvNet."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from septet.errors import ConfigError
from septet.textclass.encoders.base import (
    EncoderParams,
    TextEncoder,
    masked_max,
    masked_mean,
    register_encoder,
)


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """Vaswani et al.'s fixed position encodings, [length, dim]."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    scale = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * scale)
    table[:, 1::2] = torch.cos(position * scale[: dim // 2])
    return table


@dataclasses.dataclass
class TransformerParams(EncoderParams):
    num_layers: int = 2
    num_heads: int = 4  # must divide embedding_dim
    feedforward_dim: int = 256
    max_length: int = 512  # longest sequence the position table covers
    pooling: str = "mean"  # mean or max over tokens


def _check_heads(dim: int, heads: int) -> None:
    if heads < 1 or dim % heads:
        raise ConfigError(f"num_heads ({heads}) must divide embedding_dim ({dim})")


@register_encoder("Transformer")
class Transformer(TextEncoder):
    """A pre-norm Transformer encoder (Vaswani et al., 2017) over token embeddings with
    sinusoidal positions, mean- or max-pooled."""

    Params = TransformerParams

    def __init__(self, vocab_size: int, params: TransformerParams):
        super().__init__(vocab_size, params)
        _check_heads(params.embedding_dim, params.num_heads)
        if params.pooling not in ("mean", "max"):
            raise ConfigError(f"pooling must be mean or max, not {params.pooling!r}")
        d = params.embedding_dim
        self.embedding = nn.Embedding(vocab_size, d, padding_idx=0)
        self.register_buffer(
            "positions", sinusoidal_positions(params.max_length, d), persistent=False
        )
        layer = nn.TransformerEncoderLayer(
            d,
            params.num_heads,
            params.feedforward_dim,
            params.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, params.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = d

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = min(ids.shape[1], self.params.max_length)
        ids, mask = ids[:, :t], mask[:, :t]
        x = self.embedding(ids) * math.sqrt(self.params.embedding_dim) + self.positions[:t]
        x = self.norm(self.layers(self.dropout(x), src_key_padding_mask=~mask))
        pooled = masked_mean(x, mask) if self.params.pooling == "mean" else masked_max(x, mask)
        return self.dropout(pooled)


@dataclasses.dataclass
class StarTransformerParams(EncoderParams):
    num_cycles: int = 2  # rounds of satellite then relay updates
    num_heads: int = 4  # must divide embedding_dim
    max_length: int = 512


class _HeadAttention(nn.Module):
    """Multi-head attention of one query per row over a small set of keys: q [N, D],
    kv [N, S, D], key mask [N, S] -> [N, D]."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        n, s, d = kv.shape
        h = self.heads
        query = self.q(q).view(n, h, 1, d // h)
        key = self.k(kv).view(n, s, h, d // h).transpose(1, 2)
        value = self.v(kv).view(n, s, h, d // h).transpose(1, 2)
        attended = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=mask.view(n, 1, 1, s)
        )
        return self.out(attended.reshape(n, d))


@register_encoder("StarTransformer")
class StarTransformer(TextEncoder):
    """Guo et al. (2019): satellite nodes (one per token) attend to their neighbours, their
    own embedding and a shared relay node; the relay attends to all satellites. Linear in
    length instead of quadratic. Features: max-pooled satellites plus the relay."""

    Params = StarTransformerParams

    def __init__(self, vocab_size: int, params: StarTransformerParams):
        super().__init__(vocab_size, params)
        d = params.embedding_dim
        _check_heads(d, params.num_heads)
        self.embedding = nn.Embedding(vocab_size, d, padding_idx=0)
        self.register_buffer(
            "positions", sinusoidal_positions(params.max_length, d), persistent=False
        )
        self.satellite_attention = nn.ModuleList(
            _HeadAttention(d, params.num_heads) for _ in range(params.num_cycles)
        )
        self.relay_attention = nn.ModuleList(
            _HeadAttention(d, params.num_heads) for _ in range(params.num_cycles)
        )
        self.satellite_norm = nn.ModuleList(nn.LayerNorm(d) for _ in range(params.num_cycles))
        self.relay_norm = nn.ModuleList(nn.LayerNorm(d) for _ in range(params.num_cycles))
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = d

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = min(ids.shape[1], self.params.max_length)
        ids, mask = ids[:, :t], mask[:, :t]
        b, d = ids.shape[0], self.params.embedding_dim
        e = self.dropout(self.embedding(ids) + self.positions[:t])  # [B, T, D]
        h = e
        relay = masked_mean(e, mask)  # [B, D]
        zero = e.new_zeros(b, 1, d)
        false = mask.new_zeros(b, 1)
        for cycle in range(self.params.num_cycles):
            left = torch.cat([zero, h[:, :-1]], dim=1)
            right = torch.cat([h[:, 1:], zero], dim=1)
            context = torch.stack([left, h, right, e, relay.unsqueeze(1).expand(b, t, d)], dim=2)
            context_mask = torch.stack(
                [
                    torch.cat([false, mask[:, :-1]], dim=1),
                    mask,
                    torch.cat([mask[:, 1:], false], dim=1),
                    mask,
                    torch.ones_like(mask),
                ],
                dim=2,
            )
            context_mask[..., 1] = True  # every node sees itself (also keeps pad rows finite)
            updated = self.satellite_attention[cycle](
                h.reshape(b * t, d), context.reshape(b * t, 5, d), context_mask.reshape(b * t, 5)
            ).view(b, t, d)
            h = self.satellite_norm[cycle](torch.relu(updated)) * mask.unsqueeze(-1)
            keys = torch.cat([relay.unsqueeze(1), h], dim=1)
            keys_mask = torch.cat([torch.ones_like(false), mask], dim=1)
            relay = self.relay_norm[cycle](
                torch.relu(self.relay_attention[cycle](relay, keys, keys_mask))
            )
        return self.dropout(masked_max(h, mask) + relay)


@dataclasses.dataclass
class AttentiveConvNetParams(EncoderParams):
    hidden_dim: int = 128  # channels of the hidden representation and the attentive convolution
    kernel_size: int = 3  # width of the convolution over the local context


@register_encoder("AttentiveConvNet")
class AttentiveConvNet(TextEncoder):
    """Yin & Schütze (2018), light variant on one text: every position attends (bilinear
    scores) to all positions of the same text; a convolution over the local window is added to
    a projection of the attended context, tanh, then max pooling."""

    Params = AttentiveConvNetParams

    def __init__(self, vocab_size: int, params: AttentiveConvNetParams):
        super().__init__(vocab_size, params)
        if params.kernel_size < 1 or params.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd and positive, not {params.kernel_size}")
        d = params.hidden_dim
        self.embedding = nn.Embedding(vocab_size, params.embedding_dim, padding_idx=0)
        self.hidden = nn.Linear(params.embedding_dim, d)
        self.bilinear = nn.Linear(d, d, bias=False)
        self.local = nn.Conv1d(d, d, params.kernel_size, padding=params.kernel_size // 2)
        self.context = nn.Linear(d, d, bias=False)
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = d

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.hidden(self.dropout(self.embedding(ids))))  # [B, T, D]
        scores = torch.einsum("bid,bjd->bij", self.bilinear(h), h)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        context = scores.softmax(dim=2) @ h  # [B, T, D]
        local = self.local((h * mask.unsqueeze(-1)).transpose(1, 2)).transpose(1, 2)
        out = torch.tanh(local + self.context(context))
        return self.dropout(masked_max(out, mask))
