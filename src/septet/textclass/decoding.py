"""From probabilities to label sets: a global threshold, per-label thresholds tuned on dev,
top-k, and one-best for single-label tasks."""

from __future__ import annotations

import numpy as np

from septet.errors import ConfigError

DECODINGS = ("threshold", "top_k", "argmax")


GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)


def tune_global_threshold(
    probabilities: np.ndarray, truth: np.ndarray, grid: np.ndarray | None = None
) -> float:
    """The one threshold on ``grid`` with the best micro-F1 on the given (dev) data (ties:
    the highest)."""
    grid = GRID if grid is None else grid
    truth = truth.astype(bool)
    best, best_f1 = 0.5, -1.0
    for threshold in grid:
        predicted = probabilities >= threshold
        tp = (predicted & truth).sum()
        f1 = 2 * tp / max(predicted.sum() + truth.sum(), 1)
        if f1 >= best_f1:  # ties go to the highest threshold, as per label
            best, best_f1 = float(threshold), f1
    return best


def tune_thresholds(
    probabilities: np.ndarray,
    truth: np.ndarray,
    *,
    default: float | None = None,
    grid: np.ndarray | None = None,
    min_support: int = 1,
    objective: str = "label",
) -> np.ndarray:
    """One threshold per label, the value on ``grid`` that maximises that label's F1 on the
    given (dev) data. Labels with fewer than ``min_support`` positive documents share one
    threshold, ``default`` or (None) the one with the best micro-F1 over those rare labels
    pooled (over all labels when the rare ones have no positive at all): a threshold fitted
    to one or two examples is mostly noise, and rare labels score lower than frequent ones, so
    the threshold that suits the frequent labels leaves most rare labels never predicted.
    Ties go to the highest threshold (fewer false positives).

    ``objective="label"`` maximises each label's own F1, which helps macro-F1 but, for a label
    whose scores barely separate, may pick "predict it everywhere" and cost micro-F1 dearly.
    ``objective="micro"`` instead picks, label by label (most frequent first, the others held
    at their current thresholds), the threshold that maximises the overall micro-F1."""
    if objective not in ("label", "micro"):
        raise ConfigError(f"threshold objective must be label or micro, not {objective!r}")
    grid = GRID if grid is None else grid
    truth = truth.astype(bool)
    support = truth.sum(0)
    if default is None:
        rare = support < min_support
        pooled = rare if truth[:, rare].any() else np.ones_like(rare)
        default = tune_global_threshold(probabilities[:, pooled], truth[:, pooled], grid)
    thresholds = np.full(probabilities.shape[1], default, dtype=np.float32)
    if objective == "micro":
        return _tune_for_micro_f1(probabilities, truth, thresholds, support, min_support, grid)
    for label in np.flatnonzero(support >= min_support):
        p = probabilities[:, label][:, None] >= grid[None, :]  # [docs, grid]
        t = truth[:, label][:, None]
        tp = (p & t).sum(0)
        f1 = 2 * tp / (p.sum(0) + t.sum())
        best = np.flatnonzero(f1 == f1.max())[-1]
        thresholds[label] = grid[best]
    return thresholds


def _tune_for_micro_f1(probabilities, truth, thresholds, support, min_support, grid):
    predicted = probabilities >= thresholds
    tp = int((predicted & truth).sum())
    fp = int(predicted.sum()) - tp
    fn = int(truth.sum()) - tp
    eligible = np.flatnonzero(support >= min_support)
    for label in eligible[np.argsort(-support[eligible], kind="stable")]:
        t = truth[:, label]
        old = predicted[:, label]
        old_tp = int((old & t).sum())
        rest_tp, rest_fp, rest_fn = (
            tp - old_tp,
            fp - (int(old.sum()) - old_tp),
            fn - (int(t.sum()) - old_tp),
        )
        candidates = probabilities[:, label][:, None] >= grid[None, :]  # [docs, grid]
        label_tp = (candidates & t[:, None]).sum(0)
        label_fp = candidates.sum(0) - label_tp
        label_fn = int(t.sum()) - label_tp
        total_tp = rest_tp + label_tp
        f1 = 2 * total_tp / np.maximum(2 * total_tp + rest_fp + label_fp + rest_fn + label_fn, 1)
        best = np.flatnonzero(f1 == f1.max())[-1]
        thresholds[label] = grid[best]
        predicted[:, label] = candidates[:, best]
        tp, fp, fn = (
            int(total_tp[best]),
            int(rest_fp + label_fp[best]),
            int(rest_fn + label_fn[best]),
        )
    return thresholds


def decode(
    probabilities: np.ndarray,
    *,
    method: str = "threshold",
    thresholds: np.ndarray | float = 0.5,
    top_k: int = 1,
    at_least_one: bool = False,
) -> np.ndarray:
    """0/1 predictions ``[docs, labels]``. ``threshold``: p >= threshold (per label or one
    value); ``top_k``: the k most probable labels that also pass the threshold (k best when
    thresholds are 0); ``argmax``: exactly one label. ``at_least_one`` adds the most probable
    label to documents left empty."""
    if method not in DECODINGS:
        raise ConfigError(f"unknown decoding {method!r}; use one of {', '.join(DECODINGS)}")
    n, labels = probabilities.shape
    predictions = np.zeros((n, labels), dtype=np.int8)
    if method == "argmax":
        predictions[np.arange(n), probabilities.argmax(1)] = 1
        return predictions
    # Both sides in float32 (as tuned thresholds are stored), so a probability equal to
    # its threshold passes whatever the caller's dtype.
    passed = probabilities.astype(np.float32, copy=False) >= np.asarray(thresholds, np.float32)
    if method == "top_k":
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, not {top_k}")
        k = min(top_k, labels)
        best = np.argpartition(-probabilities, k - 1, axis=1)[:, :k]
        keep = np.zeros_like(passed)
        np.put_along_axis(keep, best, True, axis=1)
        passed &= keep
    predictions[passed] = 1
    if at_least_one:
        empty = predictions.sum(1) == 0
        predictions[np.flatnonzero(empty), probabilities[empty].argmax(1)] = 1
    return predictions
