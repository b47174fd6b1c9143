"""Documents to padded tensors: the vocabulary featurizer and batching."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from septet.errors import ConfigError
from septet.textclass.data import Document
from septet.textclass.vocabulary import Vocabulary


def document_tokens(document: Document, fields: Sequence[str]) -> list[str]:
    """The document's token lists named in ``fields``, concatenated in that order."""
    parts = {"token": document.tokens, "keyword": document.keywords, "topic": document.topics}
    tokens: list[str] = []
    for name in fields:
        if name not in parts:
            raise ConfigError(f"unknown feature field {name!r}; use token, keyword or topic")
        tokens.extend(parts[name])
    return tokens


class VocabularyFeaturizer:
    """Token ids from septet's own vocabulary, built on the training documents."""

    def __init__(
        self, fields: Sequence[str], max_tokens: int, vocabulary: Vocabulary | None = None
    ):
        self.fields = list(fields)
        self.max_tokens = max_tokens
        self.vocabulary = vocabulary

    def fit(self, documents: Sequence[Document], *, min_count: int, max_size: int) -> None:
        """Build the vocabulary from the training documents."""
        self.vocabulary = Vocabulary.build(
            (document_tokens(d, self.fields)[: self.max_tokens] for d in documents),
            min_count=min_count,
            max_size=max_size,
        )

    @property
    def vocab_size(self) -> int:
        """Number of token ids (padding and unknown included)."""
        return len(self.vocabulary)

    def transform(self, documents: Sequence[Document]) -> list[list[int]]:
        """Token ids of each document, cut at ``max_tokens``."""
        return [
            self.vocabulary.encode(document_tokens(d, self.fields), self.max_tokens)
            for d in documents
        ]

    def to_dict(self) -> dict:
        """What a saved model needs to rebuild this featurizer."""
        return {
            "kind": "vocabulary",
            "fields": self.fields,
            "max_tokens": self.max_tokens,
            "tokens": self.vocabulary.tokens[2:],
        }

    @classmethod
    def from_dict(cls, data: dict) -> VocabularyFeaturizer:
        """Inverse of :meth:`to_dict`."""
        return cls(data["fields"], data["max_tokens"], Vocabulary(data["tokens"]))


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = 0):
    """Right-padded ids ``[B, T]`` (T = longest) and the mask of real tokens."""
    length = max(len(s) for s in sequences)
    ids = np.full((len(sequences), length), pad_id, dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
    ids_tensor = torch.from_numpy(ids)
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        mask[row, : len(sequence)] = True
    return ids_tensor, mask


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Batches of indices with similar lengths (less padding when predicting); order is
    restored by the caller."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
