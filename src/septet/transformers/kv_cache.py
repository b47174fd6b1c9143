"""The key/value cache decoders keep between generation steps, and the attention masks and
position ids over its slots.

The cache is preallocated: one key and one value tensor per layer, shaped
(batch, kv_heads, capacity, head_dim), written in place at the current length. Decoding a
token then costs no allocation and no concatenation of the whole history (HF's default
dynamic cache concatenates every step). When a write would pass the capacity, the tensors
grow by doubling, so a cache made without knowing the final length still works.

Slots are cache positions, not token positions: with left padding, slot 0 of a short prompt
holds a pad token. The attention mask (batch, slots) says which slots hold real tokens.
"""

from __future__ import annotations

import torch


class KVCache:
    """Static per-layer key/value storage for one batch of sequences."""

    def __init__(
        self,
        num_layers: int,
        batch_size: int,
        num_kv_heads: int,
        head_dim: int,
        capacity: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ):
        shape = (batch_size, num_kv_heads, max(capacity, 1), head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        # Slots filled by every layer so far; a forward pass writes at [length, length + new).
        self.length = 0

    @property
    def capacity(self) -> int:
        """How many slots fit before the cache must grow."""
        return self.keys[0].shape[2]

    @property
    def batch_size(self) -> int:
        """Sequences in the batch."""
        return self.keys[0].shape[0]

    def update(
        self, layer: int, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``key``/``value`` (batch, kv_heads, new, head_dim) of ``layer`` after the
        filled slots; returns the keys and values of every filled slot including these."""
        start = self.length
        end = start + key.shape[2]
        if end > self.capacity:
            self._grow(end)
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, start:end] = key
        values[:, :, start:end] = value
        return keys[:, :, :end], values[:, :, :end]

    def advance(self, new_tokens: int) -> None:
        """Mark ``new_tokens`` more slots filled (called once per forward, after all layers)."""
        self.length += new_tokens

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self.capacity)
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                new = old.new_zeros((*old.shape[:2], capacity, old.shape[3]))
                new[:, :, : self.length] = old[:, :, : self.length]
                store[i] = new

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep only batch ``rows`` (in that order): drop finished sequences, beam reorders."""
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]


def attention_mask_for(
    attention_mask: torch.Tensor | None,
    *,
    batch_size: int,
    past_length: int,
    new_length: int,
    sliding_window: int | None,
    device: torch.device,
) -> torch.Tensor | None:
    """A boolean SDPA mask (batch, 1, new, past + new): True where a query may attend.

    Query i sits at slot ``past_length + i`` and sees slots at or before it that hold real
    tokens (``attention_mask``, 0/1 over all slots) and, with a sliding window, fewer than
    ``sliding_window`` slots back. Returns None when SDPA needs no mask: no padding, no window,
    and either a single query (it sees every slot) or an empty past (the caller passes
    ``is_causal``). Several queries after a cached past need the mask: SDPA's ``is_causal``
    aligns the triangle to the top-left, which would hide the past from them.
    """
    total = past_length + new_length
    padded = attention_mask is not None and not bool(attention_mask[:, :total].all())
    window_bites = sliding_window is not None and total > sliding_window
    if not padded and not window_bites and (new_length == 1 or past_length == 0):
        return None
    query_slots = torch.arange(past_length, total, device=device)[:, None]
    key_slots = torch.arange(total, device=device)[None, :]
    allowed = key_slots <= query_slots
    if window_bites:
        allowed = allowed & (key_slots > query_slots - sliding_window)
    allowed = allowed[None, None].expand(batch_size, 1, new_length, total)
    if padded:
        real = attention_mask[:, None, None, :total].to(torch.bool)
        allowed = allowed & real
        # A pad query would see nothing and SDPA would return NaN; let it see itself (its
        # output is never used, but NaN would spread through later layers' padding).
        itself = key_slots == query_slots
        allowed = allowed | (itself[None, None] & ~allowed.any(-1, keepdim=True))
    return allowed


# ------------------------------------------------------------------------------------------
# Position ids
# ------------------------------------------------------------------------------------------


def positions_from_mask(
    attention_mask: torch.Tensor | None, past: int, new: int, device: torch.device
) -> torch.Tensor:
    """Position ids (B, new) of the new tokens: with a mask, each real token's index among
    its sequence's real tokens (so left padding does not shift positions); pads get 1."""
    if attention_mask is None:
        return torch.arange(past, past + new, device=device)[None, :]
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.masked_fill(attention_mask == 0, 1)
    return positions[:, past : past + new]
