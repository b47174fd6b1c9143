"""Metrics against hand-computed cases and scikit-learn; decoding and thresholds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import f1_score, precision_score, recall_score

from septet.textclass.decoding import decode, tune_global_threshold, tune_thresholds
from septet.textclass.metrics import evaluate, summary_scores

TRUTH = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 0, 0]])
PRED = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 1], [1, 0, 0]])


def test_hand_computed_case():
    # label 0: tp 2, fp 1, fn 0 -> P 2/3, R 1, F1 0.8
    # label 1: tp 0, fp 0, fn 1 -> P 0, R 0, F1 0
    # label 2: tp 1, fp 1, fn 1 -> P 1/2, R 1/2, F1 1/2
    scores = summary_scores(TRUTH, PRED)
    assert scores["micro_precision"] == pytest.approx(3 / 5)
    assert scores["micro_recall"] == pytest.approx(3 / 5)
    assert scores["micro_f1"] == pytest.approx(3 / 5)
    assert scores["macro_precision"] == pytest.approx((2 / 3 + 0 + 1 / 2) / 3)
    assert scores["macro_recall"] == pytest.approx((1 + 0 + 1 / 2) / 3)
    assert scores["macro_f1"] == pytest.approx((0.8 + 0 + 0.5) / 3)  # mean of per-label F1
    p, r = 7 / 18, 1 / 2
    assert scores["macro_f1_harmonic"] == pytest.approx(2 * p * r / (p + r))  # NeuralClassifier


def test_per_level_scores_split_the_columns():
    result = evaluate(TRUTH, PRED, ["a", "a--x", "b"], levels=[1, 2, 1])
    assert result["levels"]["2"]["micro_f1"] == 0.0
    assert result["levels"]["1"] == summary_scores(TRUTH[:, [0, 2]], PRED[:, [0, 2]])
    assert [row["label"] for row in result["per_label"]] == ["a", "a--x", "b"]
    assert result["per_label"][0]["f1"] == pytest.approx(0.8)
    assert result["per_label"][1]["level"] == 2


@settings(max_examples=60, deadline=None)
@given(
    # two or more columns: scikit-learn reads a one-column matrix as a binary task instead
    arrays(np.int8, st.tuples(st.integers(1, 12), st.integers(2, 6)), elements=st.integers(0, 1)),
    st.data(),
)
def test_agrees_with_scikit_learn(truth, data):
    pred = data.draw(arrays(np.int8, truth.shape, elements=st.integers(0, 1)))
    scores = summary_scores(truth, pred)
    for average in ("micro", "macro"):
        kwargs = {"average": average, "zero_division": 0}
        assert scores[f"{average}_precision"] == pytest.approx(
            precision_score(truth, pred, **kwargs)
        )
        assert scores[f"{average}_recall"] == pytest.approx(recall_score(truth, pred, **kwargs))
        assert scores[f"{average}_f1"] == pytest.approx(f1_score(truth, pred, **kwargs))


def test_threshold_topk_and_argmax_decoding():
    probs = np.array([[0.9, 0.6, 0.2], [0.1, 0.3, 0.4]])
    assert decode(probs, thresholds=0.5).tolist() == [[1, 1, 0], [0, 0, 0]]
    assert decode(probs, thresholds=0.5, at_least_one=True).tolist() == [[1, 1, 0], [0, 0, 1]]
    assert decode(probs, thresholds=np.array([0.95, 0.5, 0.35])).tolist() == [[0, 1, 0], [0, 0, 1]]
    assert decode(probs, method="top_k", top_k=1, thresholds=0.0).tolist() == [[1, 0, 0], [0, 0, 1]]
    assert decode(probs, method="top_k", top_k=2, thresholds=0.5).tolist() == [[1, 1, 0], [0, 0, 0]]
    assert decode(probs, method="argmax").tolist() == [[1, 0, 0], [0, 0, 1]]


def test_tuned_thresholds_maximise_each_labels_f1():
    probs = np.array([[0.30, 0.9], [0.25, 0.8], [0.10, 0.7], [0.05, 0.2]])
    truth = np.array([[1, 1], [1, 0], [0, 1], [0, 0]])
    thresholds = tune_thresholds(probs, truth)
    # Label 0: any threshold in (0.10, 0.25] separates perfectly; ties go to the highest.
    assert thresholds[0] == pytest.approx(0.25)
    assert f1_score(truth[:, 0], probs[:, 0] >= thresholds[0]) == 1.0
    # Label 1: best F1 (0.8) needs p >= 0.7.
    assert f1_score(truth[:, 1], probs[:, 1] >= thresholds[1]) == pytest.approx(0.8)
    # A label with no positives in dev keeps the default.
    assert tune_thresholds(probs, np.zeros_like(truth), default=0.4) == pytest.approx([0.4, 0.4])


def test_rare_labels_share_one_threshold():
    probs = np.array([[0.9, 0.35], [0.7, 0.2], [0.2, 0.1], [0.1, 0.05]])
    truth = np.array([[1, 1], [1, 0], [0, 0], [0, 0]])
    # One threshold for all: p >= 0.35 gets 3 of 3 positives with no false positive.
    assert tune_global_threshold(probs, truth) == pytest.approx(0.35)
    thresholds = tune_thresholds(probs, truth, min_support=2)
    assert thresholds[1] == pytest.approx(0.35)  # one positive: too rare, shared threshold
    assert thresholds[0] == pytest.approx(0.7)  # two positives: its own best (ties go high)
    # Without any positive among the rare labels, the pool is every label.
    assert tune_thresholds(probs, truth * [1, 0], min_support=3) == pytest.approx([0.7, 0.7])


def test_rare_labels_threshold_is_tuned_on_the_rare_labels_pooled():
    # Label 0 is frequent and scores high; labels 1 and 2 have one dev positive each and, as
    # rare labels do, score low. A threshold tuned on every label suits label 0 and never
    # predicts the rare ones; the rare labels' own pooled threshold finds both.
    label_0 = [0.9, 0.8, 0.7, 0.6, 0.3, 0.3, 0.3, 0.3]
    label_1 = [0.2, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    label_2 = [0.05, 0.15, 0.05, 0.05, 0.05, 0.05, 0.1, 0.05]
    probs = np.array([label_0, label_1, label_2]).T
    truth = np.zeros_like(probs, dtype=int)
    truth[:4, 0] = 1
    truth[0, 1] = truth[1, 2] = 1
    everywhere = tune_global_threshold(probs, truth)
    assert everywhere > 0.2  # the global threshold predicts neither rare label
    thresholds = tune_thresholds(probs, truth, min_support=2)
    assert thresholds[1] == thresholds[2] == pytest.approx(0.15)
    assert decode(probs, thresholds=thresholds)[:, 1:].tolist() == truth[:, 1:].tolist()
    assert tune_thresholds(probs, truth, min_support=2, default=0.5)[1:] == pytest.approx(
        [0.5, 0.5]
    )


def test_micro_objective_does_not_predict_a_weak_label_everywhere():
    # Label 0 separates well. Label 1 does not: on its own, its best F1 (0.4) comes from
    # predicting it for every document, which adds 6 false positives to the total.
    label_0 = [0.9, 0.8, 0.7, 0.2, 0.1, 0.15, 0.12, 0.11]
    label_1 = [0.30, 0.31, 0.60, 0.32, 0.33, 0.34, 0.35, 0.36]
    probs = np.array([label_0, label_1]).T
    truth = np.array([[1, 1], [1, 1], [1, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]])
    by_label = tune_thresholds(probs, truth, default=0.5, objective="label")
    by_micro = tune_thresholds(probs, truth, default=0.5, objective="micro")
    assert by_label[1] == pytest.approx(0.3)  # "everything" for label 1
    micro = {
        name: f1_score(truth, decode(probs, thresholds=t), average="micro")
        for name, t in (("label", by_label), ("micro", by_micro))
    }
    assert micro["micro"] > micro["label"]
    assert micro["micro"] == pytest.approx(
        max(
            f1_score(truth, decode(probs, thresholds=np.array([0.7, x])), average="micro")
            for x in np.round(np.arange(0.05, 0.951, 0.05), 2)
        )
    )
