"""Token vocabularies and the label space: strings to integer ids and back."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from septet.errors import InputError
from septet.textclass.taxonomy import ROOT, Taxonomy

PAD, UNK = "<pad>", "<unk>"


class Vocabulary:
    """Token -> id; id 0 is padding, id 1 is the unknown token."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = [PAD, UNK, *[t for t in tokens if t not in (PAD, UNK)]]
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], *, min_count: int = 1, max_size: int = 0
    ) -> Vocabulary:
        """Most frequent tokens first (ties alphabetical, so builds are reproducible)."""
        counts = Counter(token for tokens in token_lists for token in tokens)
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t)
        )
        if max_size:
            ranked = ranked[: max(0, max_size - 2)]
        return cls(ranked)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str], max_length: int) -> list[int]:
        """Ids of the first ``max_length`` tokens (unknown tokens map to 1; at least one id)."""
        ids = [self.index.get(t, 1) for t in tokens[:max_length]]
        return ids or [1]


class LabelSpace:
    """The ordered label set of a model, with the hierarchy (if any) as index arrays."""

    def __init__(self, taxonomy: Taxonomy, hierarchical: bool):
        self.taxonomy = taxonomy
        self.hierarchical = hierarchical
        self.labels = taxonomy.labels
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.levels = np.array([taxonomy.level(label) for label in self.labels], dtype=np.int64)
        edges = [(self.index[p], self.index[c]) for p, c in taxonomy.edges()]
        self.edges = np.array(edges, dtype=np.int64).reshape(-1, 2)  # (parent, child) rows

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def depth(self) -> int:
        """Number of levels."""
        return int(self.levels.max()) if len(self.levels) else 0

    def encode(self, labels: Sequence[str]) -> list[int]:
        """Validated label ids, ancestors added when the space is hierarchical."""
        if self.hierarchical:
            names = self.taxonomy.close(labels)
        else:
            names = []
            for label in labels:
                if label not in self.index:
                    raise InputError(
                        f"label {label!r} is not one of the classifier's {len(self.labels)} "
                        "labels; declare the full label set (labels=... or a taxonomy file) "
                        "when dev or test data has labels that training lacks"
                    )
                names.append(label)
        return sorted({self.index[name] for name in names})

    def to_matrix(self, label_lists: Sequence[Sequence[str]]) -> np.ndarray:
        """A 0/1 matrix [documents, labels]."""
        matrix = np.zeros((len(label_lists), len(self.labels)), dtype=np.float32)
        for row, labels in enumerate(label_lists):
            matrix[row, self.encode(labels)] = 1.0
        return matrix

    def decode(self, row: np.ndarray) -> list[str]:
        """Label names of a 0/1 row."""
        return [self.labels[i] for i in np.flatnonzero(row)]

    def ancestor_matrix(self) -> np.ndarray:
        """A[i, j] = 1 when label j is label i or one of its ancestors."""
        n = len(self.labels)
        matrix = np.eye(n, dtype=bool)
        for i, label in enumerate(self.labels):
            for ancestor in self.taxonomy.ancestors(label):
                matrix[i, self.index[ancestor]] = True
        return matrix

    def to_dict(self) -> dict:
        """What a saved model needs to rebuild this space."""
        return {
            "hierarchical": self.hierarchical,
            "parents": {label: self.taxonomy.parent_of[label] for label in self.labels},
        }

    @classmethod
    def from_dict(cls, data: dict) -> LabelSpace:
        """Inverse of :meth:`to_dict`."""
        return cls(Taxonomy(data["parents"]), bool(data["hierarchical"]))

    @classmethod
    def from_training_labels(
        cls, label_lists: Iterable[Sequence[str]], taxonomy: Taxonomy | None, hierarchical: bool
    ) -> LabelSpace:
        """The space for a training set: the taxonomy's labels, or (no taxonomy) the labels
        seen; a hierarchical space without a taxonomy reads one from ``A--B--C`` paths, a
        flat one treats paths as plain names."""
        if taxonomy is not None:
            return cls(taxonomy, hierarchical)
        seen: dict[str, None] = {}
        for labels in label_lists:
            for label in labels:
                seen[label] = None
        if not seen:
            raise InputError("the training data has no labels")
        if hierarchical and any("--" in label for label in seen):
            return cls(Taxonomy.from_paths(sorted(seen)), hierarchical)
        return cls(Taxonomy({label: ROOT for label in sorted(seen)}), hierarchical)
