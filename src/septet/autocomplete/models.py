"""The two next-token models and the one face the completer sees.

- :class:`LSTMLanguageModel`: the anchor's model, embeddings -> stacked LSTM -> projection ->
  output layer tied to the embeddings.
- a small Llama-style decoder, :class:`septet.transformers.LlamaForCausalLM`.

:class:`NextTokenScorer` wraps either: ``advance(state, ids)`` feeds new tokens to a batch of
sequences and returns the log-probabilities of the next token plus the new state (the LSTM's
hidden state, or the decoder's KV cache); ``select(state, rows)`` picks/repeats sequences for
beam search; ``copy`` forks a state so a cached context can be reused.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from septet.errors import CheckpointError, ConfigError, NotFoundError

MODEL_KINDS = ("lstm", "llama")
# kind -> size -> LSTM (embedding, hidden, layers) or Llama (hidden, layers, heads). "medium"
# (8.7M parameters, 17 MB in float16) is the largest that keeps the package under 20 MB.
MODEL_SIZES: dict[str, dict[str, tuple[int, int, int]]] = {
    "lstm": {"tiny": (64, 96, 1), "small": (256, 512, 2)},
    "llama": {"tiny": (64, 2, 2), "small": (256, 4, 4), "medium": (320, 6, 5)},
}
KIND_FILE = "autocomplete.json"


@dataclass
class LSTMConfig:
    """Sizes of the LSTM language model."""

    vocab_size: int = 4096
    embedding_size: int = 256
    hidden_size: int = 512
    num_layers: int = 2
    dropout: float = 0.1

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LSTMConfig:
        """Read from a dict; unknown keys are errors."""
        from septet.common.config import dataclass_from_dict

        return dataclass_from_dict(cls, values, "LSTM")


class LSTMLanguageModel(nn.Module):
    """Embeddings -> LSTM layers -> projection to the embedding size -> tied output layer."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embedding_size)
        self.lstm = nn.LSTM(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.project = nn.Linear(config.hidden_size, config.embedding_size)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """ids (B, S) -> logits (B, S, V) and the (h, c) state, each (layers, B, H)."""
        x = self.drop(self.embed(ids))
        out, state = self.lstm(x, state)
        out = self.project(self.drop(out))
        return out @ self.embed.weight.T + self.bias, state


def build_model(kind: str, vocab_size: int, size: str = "small") -> nn.Module:
    """A fresh model of ``kind`` ("lstm" or "llama") for a vocabulary of ``vocab_size``."""
    sizes = MODEL_SIZES.get(kind)
    if sizes is None:
        raise ConfigError(f"model kind {kind!r} is not one of {', '.join(MODEL_KINDS)}")
    if size not in sizes:
        raise ConfigError(f"a {kind} model has no size {size!r}; use one of {', '.join(sizes)}")
    if kind == "lstm":
        dims = sizes[size]
        return LSTMLanguageModel(LSTMConfig(vocab_size, dims[0], dims[1], dims[2]))
    from septet.transformers import LlamaConfig, LlamaForCausalLM

    hidden, layers, heads = sizes[size]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 8 // 3 // 16 * 16,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def model_kind(model: nn.Module) -> str:
    """ "lstm" or "llama"."""
    return "lstm" if isinstance(model, LSTMLanguageModel) else "llama"


def language_model_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting batch[:, 1:] from batch[:, :-1]."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    if isinstance(model, LSTMLanguageModel):
        logits, _ = model(inputs)
    else:
        logits = model(inputs).logits
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def save_model(model: nn.Module, folder: str | Path, *, half: bool = False) -> Path:
    """Write the weights and config of either model kind into ``folder``."""
    from septet.common.atomic import atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    kind = model_kind(model)
    if kind == "lstm":
        from safetensors.torch import save_file

        state = {k: (v.half() if half else v).contiguous() for k, v in model.state_dict().items()}
        tmp = folder / "model.safetensors.tmp"
        save_file(state, str(tmp))
        tmp.replace(folder / "model.safetensors")
        atomic_write_json(folder / "config.json", dataclasses.asdict(model.config))
    else:
        (model.half() if half else model).save_pretrained(folder)
        if half:
            model.float()
    atomic_write_json(folder / KIND_FILE, {"kind": kind})
    return folder


def load_model(folder: str | Path) -> nn.Module:
    """Read a model written by :func:`save_model` (weights as float32, eval mode)."""
    folder = Path(folder)
    if not (folder / KIND_FILE).is_file():
        raise NotFoundError(f"{folder} holds no autocomplete model ({KIND_FILE} missing)")
    kind = json.loads((folder / KIND_FILE).read_text())["kind"]
    if kind == "lstm":
        from safetensors.torch import load_file

        config = LSTMConfig.from_dict(json.loads((folder / "config.json").read_text()))
        model = LSTMLanguageModel(config)
        state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{folder}: weights do not match config.json: {exc}") from exc
    elif kind == "llama":
        from septet.transformers import LlamaForCausalLM

        model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    else:
        raise CheckpointError(f"{folder}: unknown model kind {kind!r}")
    return model.eval()


class NextTokenScorer:
    """Log-probabilities of the next token given a state; the same face for both kinds.

    A state is an opaque object for a batch of sequences; ``None`` is the empty context."""

    def __init__(self, model: nn.Module):
        self.model = model.eval()
        self.kind = model_kind(model)

    @torch.inference_mode()
    def advance(self, state: Any, ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Feed ``ids`` (B, S) after ``state``; (log-probs (B, V) of the next token, new
        state). The decoder's cache is updated in place: :meth:`copy` it first to keep it."""
        if self.kind == "lstm":
            logits, new_state = self.model(ids, state)
            return torch.log_softmax(logits[:, -1].float(), -1), new_state
        if state is None:
            state = self.model.new_cache(ids.shape[0], ids.shape[1] + 32)
        out = self.model(ids, past_key_values=state, use_cache=True, logits_to_keep=1)
        return torch.log_softmax(out.logits[:, -1].float(), -1), out.past_key_values

    def select(self, state: Any, rows: torch.Tensor) -> Any:
        """A new state holding sequences ``rows`` of ``state`` (rows may repeat)."""
        if state is None:
            return None
        if self.kind == "lstm":
            return (state[0][:, rows], state[1][:, rows])
        # One gather per layer into fresh storage with room for a few more tokens (no zero
        # fill: slots past ``length`` are written before they are read).
        room = state.length + 16
        out = self.model.new_cache(len(rows), 1)
        out.keys = [_gather(k, rows, state.length, room) for k in state.keys]
        out.values = [_gather(v, rows, state.length, room) for v in state.values]
        out.length = state.length
        return out

    def gather(self, parts: list[tuple[Any, torch.Tensor]]) -> Any:
        """A new state holding, in order, sequences ``rows`` of each ``(state, rows)``; the
        states hold sequences of one length (beams of one search step)."""
        if self.kind == "lstm":
            picked = [self.select(state, rows) for state, rows in parts]
            return (torch.cat([h for h, _ in picked], 1), torch.cat([c for _, c in picked], 1))
        length = parts[0][0].length
        rows = [r for _, r in parts]
        out = self.model.new_cache(sum(len(r) for r in rows), 1)
        layers = len(parts[0][0].keys)
        out.keys = [
            _gather_many([s.keys[i] for s, _ in parts], rows, length) for i in range(layers)
        ]
        out.values = [
            _gather_many([s.values[i] for s, _ in parts], rows, length) for i in range(layers)
        ]
        out.length = length
        return out

    def copy(self, state: Any) -> Any:
        """An independent copy of a one-sequence state."""
        if state is None or self.kind == "lstm":
            return state  # LSTM states are never changed in place
        return self.select(state, torch.zeros(1, dtype=torch.long))

    def length(self, state: Any) -> int | None:
        """Tokens held by a decoder cache (None for the LSTM, whose state has no length)."""
        return None if state is None or self.kind == "lstm" else state.length


def _gather(store: torch.Tensor, rows: torch.Tensor, length: int, room: int) -> torch.Tensor:
    """Rows ``rows`` of a (batch, heads, slots, dim) cache tensor with at least ``room``
    slots; the first ``length`` are copied."""
    if store.shape[2] >= room:  # one contiguous gather is the fastest copy
        return store.index_select(0, rows)
    out = store.new_empty((len(rows), store.shape[1], room, store.shape[3]))
    out[:, :, :length] = store[:, :, :length].index_select(0, rows)
    return out


def _gather_many(stores: list[torch.Tensor], rows: list[torch.Tensor], length: int) -> torch.Tensor:
    """Rows ``rows[i]`` of each ``stores[i]`` one after the other, in a (batch, heads, slots,
    dim) tensor with room for a few more tokens; the first ``length`` slots are copied."""
    first = stores[0]
    out = first.new_empty((sum(len(r) for r in rows), first.shape[1], length + 16, first.shape[3]))
    start = 0
    for store, picked in zip(stores, rows, strict=True):
        out[start : start + len(picked), :, :length] = store[:, :, :length].index_select(0, picked)
        start += len(picked)
    return out
