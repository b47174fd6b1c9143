"""FastText (Joulin et al., 2017): the mean of word and hashed word-bigram embeddings."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from septet.textclass.encoders.base import EncoderParams, TextEncoder, register_encoder


@dataclasses.dataclass
class FastTextParams(EncoderParams):
    bigram_buckets: int = 50_000  # hash buckets for word bigrams; 0 turns bigrams off


@register_encoder("FastText")
class FastText(TextEncoder):
    Params = FastTextParams

    def __init__(self, vocab_size: int, params: FastTextParams):
        super().__init__(vocab_size, params)
        self.embedding = nn.Embedding(vocab_size, params.embedding_dim, padding_idx=0)
        self.bigrams = (
            nn.Embedding(params.bigram_buckets, params.embedding_dim)
            if params.bigram_buckets
            else None
        )
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = params.embedding_dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vectors = self.embedding(ids) * mask.unsqueeze(-1)  # [B, T, E]
        total = vectors.sum(1)
        count = mask.sum(1, keepdim=True).to(vectors.dtype)
        if self.bigrams is not None and ids.shape[1] > 1:
            # A fixed multiplicative hash of the id pair; the same pair always lands in the
            # same bucket, so the model is deterministic without a bigram vocabulary.
            pair = ids[:, :-1] * 1_000_003 + ids[:, 1:]
            buckets = pair.remainder(self.bigrams.num_embeddings)
            pair_mask = mask[:, :-1] & mask[:, 1:]
            total = total + (self.bigrams(buckets) * pair_mask.unsqueeze(-1)).sum(1)
            count = count + pair_mask.sum(1, keepdim=True)
        return self.dropout(total / count.clamp_min(1.0))
