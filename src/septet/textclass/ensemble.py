"""TextEnsemble: several TextClassifiers over the same labels, their probabilities averaged
(weighted), with thresholds tuned on dev for the average - e.g. a TextCNN, which reads word
order, with an NGramLinear model, which keeps a weight for every rare n-gram.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from septet.common.atomic import atomic_directory
from septet.errors import ConfigError, InputError
from septet.textclass.classifier import TextClassifier, read_saved_meta
from septet.textclass.data import Document

FORMAT_VERSION = 1
META_FILE = "ensemble.json"


def weight_grid(members: int, step: float) -> list[np.ndarray]:
    """Every weighting of ``members`` on multiples of ``step`` that sums to 1."""
    if members > 3:
        raise ConfigError(f"weight tuning searches a grid for up to 3 members, not {members}")
    if not 0 < step <= 0.5 or abs(round(1 / step) * step - 1) > 1e-9:
        raise ConfigError(f"step must divide 1 into at least 2 parts (e.g. 0.1), not {step}")
    parts = round(1 / step)
    mixes = []
    for first in range(parts + 1):
        if members == 1:
            return [np.array([1.0])]
        for second in range(parts + 1 - first):
            rest = parts - first - second
            if members == 2 and rest:
                continue
            counts = [first, second] + ([rest] if members == 3 else [])
            mixes.append(np.array(counts, dtype=np.float64) / parts)
    return mixes


class TextEnsemble:
    """Averages the label probabilities of ``members`` (weights: their shares, default
    equal); predictions use thresholds tuned on dev for that average (the first member's
    [eval] options: objective, min support, per level) and the first member's decoding."""

    def __init__(self, members: Sequence[TextClassifier], weights: Sequence[float] | None = None):
        if not members:
            raise ConfigError("a TextEnsemble needs at least one member classifier")
        if weights is None:
            weights = [1.0] * len(members)
        if len(weights) != len(members) or any(not w >= 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(
                f"give one non-negative weight per member ({len(members)}), not all zero; "
                f"got {list(weights)}"
            )
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float64) / float(sum(weights))
        self.thresholds: np.ndarray | None = None

    @property
    def classes_(self) -> list[str]:
        """The label names, in the column order of :meth:`predict_proba`."""
        self._check_members()
        return self.members[0].classes_

    def fit(
        self,
        texts: Sequence[str] | Sequence[Document],
        labels: Sequence | None = None,
        *,
        dev: tuple[Sequence, Sequence | None],
        tune_weights: bool = False,
    ) -> TextEnsemble:
        """Train every member on the same data (each picks its best epoch on ``dev``), then
        tune the ensemble on ``dev`` = (texts, labels) (see :meth:`tune`)."""
        for member in self.members:
            member.fit(texts, labels, dev=dev)
        return self.tune(*dev, tune_weights=tune_weights)

    def tune(
        self,
        texts: Sequence[str] | Sequence[Document],
        labels: Sequence | None = None,
        *,
        tune_weights: bool = False,
        step: float = 0.1,
    ) -> TextEnsemble:
        """Tune the thresholds of the averaged probabilities on labelled (dev) data; the
        members must be trained already. With ``tune_weights``, also the members' weights:
        every mix on a grid of ``step`` (weights summing to 1; up to 3 members) gets its own
        thresholds, and the mix with the best dev micro-F1 (over the first member's
        eval.selection_level labels) is kept; ``tuning_`` lists every mix's score."""
        from septet.textclass.metrics import summary_scores

        self._check_members()
        first = self.members[0]
        documents = first._documents(texts, labels, "dev")
        targets = first.label_space.to_matrix([d.labels for d in documents])
        if not tune_weights:
            self.thresholds = first.tune_thresholds(self.predict_proba(documents), targets)
            return self
        parts = [member.predict_proba(documents).astype(np.float64) for member in self.members]
        judged = first._selected_columns()
        scores = []
        best = None
        for mix in weight_grid(len(self.members), step):
            average = sum(w * p for w, p in zip(mix, parts, strict=True)).astype(np.float32)
            thresholds = first.tune_thresholds(average, targets)
            predicted = first.decode_probabilities(average, thresholds=thresholds)
            score = summary_scores(targets[:, judged], predicted[:, judged])["micro_f1"]
            scores.append({"weights": mix.tolist(), "dev_micro_f1": score})
            if best is None or score > best[0]:
                best = (score, mix, thresholds)
        _, self.weights, self.thresholds = best
        self.tuning_ = scores
        return self

    def _check_members(self) -> None:
        first = self.members[0]
        for i, member in enumerate(self.members):
            if member.model is None:
                raise InputError(f"ensemble member {i} ({member.encoder}) is not trained yet")
            same = (
                member.label_space.labels == first.label_space.labels
                and member.label_space.hierarchical == first.label_space.hierarchical
                and member.multi_label == first.multi_label
            )
            if not same:
                raise InputError(
                    f"ensemble member {i} ({member.encoder}) was trained on other labels than "
                    f"member 0 ({first.encoder}); train every member on the same label set "
                    "(labels=... or the same taxonomy)"
                )

    def predict_proba(self, texts: Sequence[str] | Sequence[Document]) -> np.ndarray:
        """The weighted mean of the members' probabilities ``[texts, labels]``."""
        self._check_members()
        documents = self.members[0]._as_documents(texts)
        total = None
        for weight, member in zip(self.weights, self.members, strict=True):
            part = weight * member.predict_proba(documents).astype(np.float64)
            total = part if total is None else total + part
        return total.astype(np.float32)

    def decode_probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """0/1 predictions from averaged probabilities with the ensemble's thresholds."""
        first = self.members[0]
        thresholds = self.thresholds
        if thresholds is None:  # not tuned: the fixed eval.threshold, not member 0's own
            thresholds = np.float32(first.sections["eval"].threshold)
        return first.decode_probabilities(probabilities, thresholds=thresholds)

    def predict_matrix(self, texts: Sequence[str] | Sequence[Document]) -> np.ndarray:
        """0/1 predictions ``[texts, labels]``."""
        return self.decode_probabilities(self.predict_proba(texts))

    def predict(self, texts: Sequence[str] | Sequence[Document]) -> list:
        """Predicted label lists (one label per text for multi-class members)."""
        classes = self.classes_
        rows = [[classes[j] for j in np.flatnonzero(row)] for row in self.predict_matrix(texts)]
        return rows if self.members[0].multi_label else [row[0] for row in rows]

    def evaluate(self, texts: Sequence[str] | Sequence[Document], labels: Sequence | None = None):
        """Metrics on labelled data: flat, per hierarchy level and per label."""
        from septet.textclass.metrics import evaluate

        first = self.members[0]
        documents = first._documents(texts, labels, "evaluation")
        truth = first.label_space.to_matrix([d.labels for d in documents])
        predictions = self.predict_matrix(documents)
        space = first.label_space
        levels = space.levels if space.hierarchical else None
        return evaluate(truth, predictions, space.labels, levels)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ensemble to folder ``path``: each member in ``member-<i>/`` and
        ensemble.json, atomically (a crash leaves the old folder or the new one)."""
        self._check_members()
        with atomic_directory(path) as staging:
            names = []
            for i, member in enumerate(self.members):
                names.append(f"member-{i}")
                member.save(staging / names[-1])
            meta = {
                "format": "septet.textclass.ensemble",
                "version": FORMAT_VERSION,
                "members": names,
                "weights": self.weights.tolist(),
                "thresholds": None if self.thresholds is None else self.thresholds.tolist(),
            }
            (staging / META_FILE).write_text(json.dumps(meta), "utf-8")
            with open(staging / META_FILE, "rb") as handle:
                os.fsync(handle.fileno())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> TextEnsemble:
        """Load a folder written by :meth:`save`."""
        folder = Path(path)
        meta = read_saved_meta(folder, META_FILE, "septet.textclass.ensemble", "TextEnsemble")
        members = [TextClassifier.load(folder / name, device=device) for name in meta["members"]]
        ensemble = cls(members, meta["weights"])
        thresholds = meta.get("thresholds")
        ensemble.thresholds = None if thresholds is None else np.asarray(thresholds, np.float32)
        ensemble._check_members()
        return ensemble
