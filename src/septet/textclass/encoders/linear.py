"""NGramLinear: a linear classifier over TF-IDF-weighted word and word-bigram features, the
classic strong baseline for short-text tagging (TF-IDF + a linear SVM or logistic regression),
trained here like every other septet model: septet's losses, early stopping on dev, tuned
thresholds, hierarchies.

Each document becomes a sparse bag over ``vocab_size + bigram_buckets`` rows: its words (ids)
and its hashed word bigrams, each weighted by sublinear term frequency ``1 + log(tf)`` times the
smoothed inverse document frequency of the training data, the bag scaled to unit L2 norm
(scikit-learn's ``TfidfVectorizer(sublinear_tf=True)``). The head keeps one weight per
(feature, label), a full-rank linear model with no embedding bottleneck, stored as an embedding
table so that a batch updates only the rows of the n-grams it contains (sparse gradients).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from septet.errors import ConfigError
from septet.textclass.encoders.base import TextEncoder, register_encoder

# The same fixed multiplicative hash as FastText's bigrams: a pair always lands in one bucket.
PAIR_MULTIPLIER = 1_000_003


@dataclasses.dataclass
class NGramLinearParams:
    bigram_buckets: int = 200_000  # hash buckets for word bigrams; 0 turns bigrams off
    sublinear_tf: bool = True  # weigh a feature by 1 + log(tf) instead of tf
    idf: bool = True  # multiply by the smoothed inverse document frequency of the training data
    dropout: float = 0.0  # drop this share of a document's features while training (gradient)
    # gradient: septet's trainer (loss, optimiser, epochs); dual_cd: one-vs-rest L2-regularised
    # squared-hinge SVMs solved exactly by dual coordinate descent (a linear SVM), one pass
    # over the data per epoch
    solver: str = "gradient"
    c: float = 0.5  # dual_cd: the SVM's C (inverse regularisation strength)


class NGramBag(NamedTuple):
    """A padded batch of sparse bags: ``rows [B, K]`` (feature ids) and ``weights [B, K]``
    (0 on padding)."""

    rows: torch.Tensor
    weights: torch.Tensor


@register_encoder("NGramLinear")
class NGramLinear(TextEncoder):
    """Token ids -> a TF-IDF bag of words and word bigrams (see the module docstring)."""

    Params = NGramLinearParams

    def __init__(self, vocab_size: int, params: NGramLinearParams):
        super().__init__(vocab_size, params)
        if params.bigram_buckets < 0:
            raise ConfigError(f"bigram_buckets must be >= 0, not {params.bigram_buckets}")
        if not 0.0 <= params.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), not {params.dropout}")
        if params.solver not in ("gradient", "dual_cd"):
            raise ConfigError(f"solver must be gradient or dual_cd, not {params.solver!r}")
        if params.c <= 0:
            raise ConfigError(f"c must be > 0, not {params.c}")
        if params.solver == "dual_cd" and params.dropout:
            raise ConfigError("dropout applies to the gradient solver; set it to 0 with dual_cd")
        self.num_rows = vocab_size + params.bigram_buckets
        self.output_dim = self.num_rows
        # Set from the training data by fit_corpus; saved with the model (a persistent buffer).
        self.register_buffer("idf_weights", torch.ones(self.num_rows))

    def _rows(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Feature ids ``[B, T + T - 1]``: words, then hashed bigrams; -1 where padding."""
        words = torch.where(mask, ids, torch.full_like(ids, -1))
        if not self.params.bigram_buckets or ids.shape[1] < 2:
            return words
        pair = ids[:, :-1] * PAIR_MULTIPLIER + ids[:, 1:]
        bigrams = self.vocab_size + pair.remainder(self.params.bigram_buckets)
        pair_mask = mask[:, :-1] & mask[:, 1:]
        return torch.cat(
            [words, torch.where(pair_mask, bigrams, torch.full_like(ids[:, 1:], -1))], 1
        )

    def _counted(self, ids: torch.Tensor, mask: torch.Tensor):
        """Each document's distinct features and how often each occurs: ``rows [B, K]``
        (sorted, padding as ``num_rows``), ``first [B, K]`` (True once per distinct real
        feature) and ``counts [B, K]`` (its term frequency at that position)."""
        rows = self._rows(ids, mask)
        rows = torch.where(rows < 0, torch.full_like(rows, self.num_rows), rows)
        rows, _ = rows.sort(dim=1)
        first = torch.ones_like(rows, dtype=torch.bool)
        first[:, 1:] = rows[:, 1:] != rows[:, :-1]
        first &= rows < self.num_rows
        run = torch.ones_like(rows, dtype=torch.bool)
        run[:, 1:] = rows[:, 1:] != rows[:, :-1]
        segment = run.long().cumsum(1) - 1  # which run of equal ids each position is in
        counts = torch.zeros_like(rows).scatter_add_(1, segment, torch.ones_like(rows))
        return rows, first, counts.gather(1, segment)

    @torch.no_grad()
    def fit_corpus(self, sequences: Sequence[Sequence[int]], batch_size: int = 512) -> None:
        """Set the inverse document frequencies from the training documents' token ids:
        ``idf = ln((1 + n) / (1 + df)) + 1`` (scikit-learn's smooth idf), and 0 for n-grams
        that no training document has: like a vocabulary's unknown n-grams they then count
        for nothing (a hashed bigram first seen at test time has no weight to add and
        should not dilute the document's norm)."""
        from septet.textclass.features import pad_batch

        df = torch.zeros(self.num_rows + 1, dtype=torch.float64)
        for start in range(0, len(sequences), batch_size):
            ids, mask = pad_batch(list(sequences[start : start + batch_size]))
            rows, first, _ = self._counted(ids, mask)
            df += torch.bincount(rows[first], minlength=self.num_rows + 1).double()
        n = len(sequences)
        df = df[: self.num_rows].numpy()
        idf = np.where(df > 0, np.log((1.0 + n) / (1.0 + df)) + 1.0, 0.0)
        self.idf_weights.copy_(torch.from_numpy(idf).float())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> NGramBag:
        rows, first, counts = self._counted(ids, mask)
        tf = counts.float()
        if self.params.sublinear_tf:
            tf = 1.0 + torch.log(tf.clamp_min(1.0))
        real = rows.clamp_max(self.num_rows - 1)
        weights = torch.where(first, tf, torch.zeros_like(tf))
        if self.params.idf:
            weights = weights * self.idf_weights[real]
        if self.training and self.params.dropout:
            weights = nn.functional.dropout(weights, self.params.dropout)
        weights = weights / weights.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return NGramBag(torch.where(first, real, torch.zeros_like(real)), weights)

    def make_head(self, num_labels: int, levels: list[int], parents: list[int]) -> nn.Module:
        return SparseLinearHead(self.num_rows, num_labels)


class SparseLinearHead(nn.Module):
    """``bag -> bag @ W + b`` with ``W [features, labels]`` kept as an embedding table, so the
    optimiser sees sparse gradients for the rows a batch uses (see trainer.make_optimizers)."""

    def __init__(self, num_rows: int, num_labels: int):
        super().__init__()
        self.table = nn.Embedding(num_rows, num_labels)
        nn.init.zeros_(self.table.weight)  # start at the prior: logits = bias
        self.bias = nn.Parameter(torch.zeros(num_labels))

    @property
    def output_weight(self) -> torch.Tensor:
        """[labels, features]: one weight row per label (a transposed view of the table)."""
        return self.table.weight.t()

    def forward(self, bag: NGramBag) -> torch.Tensor:
        logits = nn.functional.embedding_bag(
            bag.rows,
            self.table.weight,
            mode="sum",
            sparse=self.table.sparse,
            per_sample_weights=bag.weights,
        )
        return logits + self.bias

    def loss(self, bag: NGramBag, targets: torch.Tensor, loss_fn) -> torch.Tensor:
        """The training loss of this head."""
        return loss_fn(self(bag), targets)

    @torch.no_grad()
    def init_bias(self, bias: torch.Tensor) -> None:
        """Start each label's bias at ``bias [labels]`` (see base.prior_bias)."""
        self.bias.copy_(bias)
