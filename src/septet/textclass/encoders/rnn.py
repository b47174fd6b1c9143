"""Recurrent encoders: TextRNN, TextRCNN and DRNN."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from septet.errors import ConfigError
from septet.textclass.encoders.base import (
    AdditiveAttentionPool,
    EncoderParams,
    TextEncoder,
    masked_max,
    masked_mean,
    register_encoder,
)

CELLS = {"GRU": nn.GRU, "LSTM": nn.LSTM}
POOLINGS = ("attention", "max", "mean", "last")


@dataclasses.dataclass
class RecurrentParams(EncoderParams):
    cell: str = "GRU"  # GRU or LSTM
    hidden_dim: int = 128  # per direction
    num_layers: int = 1
    bidirectional: bool = True


@dataclasses.dataclass
class RNNParams(RecurrentParams):
    pooling: str = "attention"  # attention, max, mean or last
    attention_dim: int = 128  # size of the attention projection (pooling = attention)


def _make_rnn(input_dim: int, params: RecurrentParams) -> nn.Module:
    if params.cell.upper() not in CELLS:
        raise ConfigError(f"cell must be GRU or LSTM, not {params.cell!r}")
    return CELLS[params.cell.upper()](
        input_dim,
        params.hidden_dim,
        num_layers=params.num_layers,
        bidirectional=params.bidirectional,
        batch_first=True,
        dropout=params.dropout if params.num_layers > 1 else 0.0,
    )


def run_rnn(rnn: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run ``rnn`` over the real steps only (packed), returning [B, T, H] with zeros on pads."""
    lengths = mask.sum(1).clamp_min(1).cpu()
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, _ = rnn(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out


@register_encoder("TextRNN")
class TextRNN(TextEncoder):
    """A (bi)GRU or LSTM over the tokens, pooled by attention, max, mean or the last state."""

    Params = RNNParams

    def __init__(self, vocab_size: int, params: RNNParams):
        super().__init__(vocab_size, params)
        if params.pooling not in POOLINGS:
            raise ConfigError(
                f"pooling must be one of {', '.join(POOLINGS)}, not {params.pooling!r}"
            )
        self.embedding = nn.Embedding(vocab_size, params.embedding_dim, padding_idx=0)
        self.rnn = _make_rnn(params.embedding_dim, params)
        dim = params.hidden_dim * (2 if params.bidirectional else 1)
        self.attention = (
            AdditiveAttentionPool(dim, params.attention_dim)
            if params.pooling == "attention"
            else None
        )
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = run_rnn(self.rnn, self.dropout(self.embedding(ids)), mask)  # [B, T, H]
        pooling = self.params.pooling
        if pooling == "attention":
            pooled = self.attention(out, mask)
        elif pooling == "max":
            pooled = masked_max(out, mask)
        elif pooling == "mean":
            pooled = masked_mean(out, mask)
        else:
            h = self.params.hidden_dim
            last = (mask.sum(1) - 1).clamp_min(0)
            forward_last = out[torch.arange(out.shape[0], device=out.device), last, :h]
            pooled = (
                torch.cat([forward_last, out[:, 0, h:]], dim=1)
                if self.params.bidirectional
                else forward_last
            )
        return self.dropout(pooled)


@dataclasses.dataclass
class TextRCNNParams(RecurrentParams):
    projection_dim: int = 256  # size of the tanh projection of [left; word; right]


@register_encoder("TextRCNN")
class TextRCNN(TextEncoder):
    """Lai et al. (2015): each word is represented by its left context, itself and its right
    context (a bidirectional RNN), projected with tanh and max-pooled over time."""

    Params = TextRCNNParams

    def __init__(self, vocab_size: int, params: TextRCNNParams):
        super().__init__(vocab_size, params)
        self.embedding = nn.Embedding(vocab_size, params.embedding_dim, padding_idx=0)
        self.rnn = _make_rnn(params.embedding_dim, params)
        dim = params.hidden_dim * (2 if params.bidirectional else 1) + params.embedding_dim
        self.project = nn.Linear(dim, params.projection_dim)
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = params.projection_dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embedding(ids))
        out = run_rnn(self.rnn, x, mask)
        h = torch.tanh(self.project(torch.cat([out, x], dim=2)))
        return self.dropout(masked_max(h, mask))


@dataclasses.dataclass
class DRNNParams(EncoderParams):
    cell: str = "GRU"
    hidden_dim: int = 128
    window_size: int = 5  # each state sees only this many previous words (the "disconnection")


@register_encoder("DRNN")
class DRNN(TextEncoder):
    """Wang (2018), disconnected RNN: an RNN restarted at every position over a fixed window
    of preceding words (position-invariant like a CNN, order-aware like an RNN), then a
    layer-normalised MLP and max pooling."""

    Params = DRNNParams

    def __init__(self, vocab_size: int, params: DRNNParams):
        super().__init__(vocab_size, params)
        if params.cell.upper() not in CELLS:
            raise ConfigError(f"cell must be GRU or LSTM, not {params.cell!r}")
        if params.window_size < 1:
            raise ConfigError(f"window_size must be positive, not {params.window_size}")
        self.embedding = nn.Embedding(vocab_size, params.embedding_dim, padding_idx=0)
        self.rnn = CELLS[params.cell.upper()](
            params.embedding_dim, params.hidden_dim, batch_first=True
        )
        self.norm = nn.LayerNorm(params.hidden_dim)
        self.mlp = nn.Linear(params.hidden_dim, params.hidden_dim)
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = params.hidden_dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k = self.params.window_size
        b, t = ids.shape
        x = self.dropout(self.embedding(ids))  # [B, T, E]
        x = nn.functional.pad(x, (0, 0, k - 1, 0))  # k-1 zero steps before the first word
        windows = x.unfold(1, k, 1).permute(0, 1, 3, 2)  # [B, T, k, E]
        _, state = self.rnn(windows.reshape(b * t, k, -1))
        last = (state[0] if isinstance(state, tuple) else state)[-1].view(b, t, -1)
        h = torch.relu(self.mlp(self.dropout(self.norm(last))))
        return self.dropout(masked_max(h, mask))
