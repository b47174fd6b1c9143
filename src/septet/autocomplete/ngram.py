"""A token n-gram model with the scorer face, the baseline the neural models must beat.

Counts of (n-1 tokens -> next token) with interpolated absolute-discount backoff to shorter
contexts and finally to add-one unigram counts. The state is the last n-1 tokens per sequence.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import torch


class NgramScorer:
    """Log-probabilities of the next token from counted n-grams (n >= 1)."""

    kind = "ngram"

    def __init__(self, vocab_size: int, n: int = 4, discount: float = 0.75):
        self.vocab_size = vocab_size
        self.n = n
        self.discount = discount
        self.counts: list[dict[tuple[int, ...], Counter[int]]] = [
            defaultdict(Counter) for _ in range(n)
        ]
        self._unigram: torch.Tensor | None = None

    def fit(self, token_lists: Iterable[Sequence[int]]) -> NgramScorer:
        """Count the n-grams of every sequence."""
        self._unigram = None
        for ids in token_lists:
            ids = list(ids)
            for i, token in enumerate(ids):
                for order in range(self.n):
                    if i - order < 0:
                        break
                    self.counts[order][tuple(ids[i - order : i])][token] += 1
        return self

    def distribution(self, history: Sequence[int]) -> torch.Tensor:
        """P(next token | the last n-1 tokens of ``history``), (V,)."""
        if self._unigram is None:  # add-one unigram, computed once after fitting
            unigram = torch.ones(self.vocab_size)
            for token, c in self.counts[0][()].items():
                unigram[token] += c
            self._unigram = unigram / unigram.sum()
        probs = self._unigram
        for order in range(1, self.n):
            if len(history) < order:
                break
            counter = self.counts[order].get(tuple(history[-order:]))
            if not counter:
                break
            total = sum(counter.values())
            higher = torch.zeros(self.vocab_size)
            for token, c in counter.items():
                higher[token] = max(c - self.discount, 0) / total
            backoff = self.discount * len(counter) / total
            probs = higher + backoff * probs
        return probs

    def advance(self, state: Any, ids: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Same contract as :class:`septet.autocomplete.models.NextTokenScorer.advance`."""
        rows = state if state is not None else [[] for _ in range(ids.shape[0])]
        new_rows = [
            (row + ids[b].tolist())[-(self.n - 1) or len(row) :] for b, row in enumerate(rows)
        ]
        if self.n == 1:
            new_rows = [[] for _ in rows]
        logprobs = torch.stack([self.distribution(h).log() for h in new_rows])
        return logprobs, new_rows

    def select(self, state: Any, rows: torch.Tensor) -> Any:
        """Sequences ``rows`` of ``state``."""
        return None if state is None else [list(state[int(r)]) for r in rows]

    def gather(self, parts: list[tuple[Any, torch.Tensor]]) -> Any:
        """Sequences ``rows`` of each ``(state, rows)``, one after the other."""
        return [list(state[int(r)]) for state, rows in parts for r in rows]

    def copy(self, state: Any) -> Any:
        """An independent copy."""
        return None if state is None else [list(s) for s in state]

    def length(self, state: Any) -> int | None:
        """Not a decoder cache."""
        return None
