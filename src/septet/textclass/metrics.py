"""Classification metrics: per label, micro and macro, flat and per hierarchy level.

Two macro-F1s are reported, each under its own name, because the literature uses both:
``macro_f1`` is the mean of per-label F1 (scikit-learn's ``average="macro"``), and
``macro_f1_harmonic`` is NeuralClassifier's, the harmonic mean of macro-precision and
macro-recall. A label with no predictions has precision 0 and one with no true documents has
recall 0 (scikit-learn's ``zero_division=0``); every label of the label set counts in the macro
averages, seen in the evaluated documents or not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _ratio(numerator: np.ndarray | float, denominator: np.ndarray | float):
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _f1(precision, recall):
    return _ratio(2 * np.asarray(precision) * recall, np.asarray(precision) + recall)


def summary_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Micro and macro precision, recall and F1 of 0/1 matrices ``[documents, labels]``."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shapes differ: truth {y_true.shape}, predictions {y_pred.shape}")
    tp = (y_true & y_pred).sum(0)
    predicted = y_pred.sum(0)
    actual = y_true.sum(0)
    micro_p = float(_ratio(tp.sum(), predicted.sum()))
    micro_r = float(_ratio(tp.sum(), actual.sum()))
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, actual)
    macro_p = float(precision.mean()) if precision.size else 0.0
    macro_r = float(recall.mean()) if recall.size else 0.0
    return {
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": float(_f1(micro_p, micro_r)),
        "macro_precision": macro_p,
        "macro_recall": macro_r,
        "macro_f1": float(_f1(precision, recall).mean()) if precision.size else 0.0,
        "macro_f1_harmonic": float(_f1(macro_p, macro_r)),
        "labels": int(y_true.shape[1]),
        "support": int(actual.sum()),
    }


def per_label_scores(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> list[dict[str, float | int | str]]:
    """Precision, recall, F1 and support of each label."""
    y_true = np.asarray(y_true, dtype=bool)
    y_pred = np.asarray(y_pred, dtype=bool)
    tp = (y_true & y_pred).sum(0)
    precision = _ratio(tp, y_pred.sum(0))
    recall = _ratio(tp, y_true.sum(0))
    f1 = _f1(precision, recall)
    return [
        {
            "label": label,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(y_true[:, i].sum()),
        }
        for i, label in enumerate(labels)
    ]


def evaluate(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: Sequence[str],
    levels: Sequence[int] | None = None,
    *,
    with_per_label: bool = True,
) -> dict:
    """Flat scores, scores per hierarchy level (when ``levels`` has more than one level) and,
    optionally, per-label scores."""
    result: dict = {"flat": summary_scores(y_true, y_pred)}
    if levels is not None:
        level_array = np.asarray(levels)
        distinct = sorted(set(level_array.tolist()))
        if len(distinct) > 1:
            result["levels"] = {
                str(level): summary_scores(
                    y_true[:, level_array == level], y_pred[:, level_array == level]
                )
                for level in distinct
            }
    if with_per_label:
        result["per_label"] = per_label_scores(y_true, y_pred, labels)
        if levels is not None:
            for row, level in zip(result["per_label"], levels, strict=True):
                row["level"] = int(level)
    return result
