"""septet's dual coordinate descent for one-vs-rest linear SVMs (NGramLinear solver dual_cd)."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.svm import LinearSVC

from septet.errors import ConfigError
from septet.textclass.classifier import TextClassifier
from septet.textclass.linear_svm import dual_cd_passes


def _problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = sp.random(300, 200, density=0.05, random_state=seed, format="csr", dtype=np.float64)
    norms = np.maximum(np.sqrt(np.asarray(x.multiply(x).sum(1))), 1e-9)
    x = sp.csr_matrix(x.multiply(1 / norms))
    truth = x @ rng.normal(size=(200, 3)) + 0.3 * rng.normal(size=(300, 3))
    return x, (truth > 0.2).astype(np.int8)


@pytest.mark.parametrize("c", [0.5, 4.0])
def test_solves_the_same_svms_as_liblinear(c):
    x, y = _problem()
    weights = dual_cd_passes(x.astype(np.float32), y, c=c, passes=300, seed=0)
    for label in range(y.shape[1]):
        reference = LinearSVC(C=c, tol=1e-8, max_iter=100_000).fit(x, y[:, label])
        ours = x @ weights[:-1, label] + weights[-1, label]
        np.testing.assert_allclose(ours, reference.decision_function(x), atol=1e-4)


def test_positive_weights_are_liblinears_class_weights():
    x, y = _problem(2)
    weights = dual_cd_passes(
        x.astype(np.float32), y, c=0.5, passes=300, seed=0, positive_weights=np.array([1, 3, 9])
    )
    for label, weight in enumerate([1, 3, 9]):
        reference = LinearSVC(C=0.5, class_weight={1: weight}, tol=1e-8, max_iter=100_000)
        reference.fit(x, y[:, label])
        ours = x @ weights[:-1, label] + weights[-1, label]
        np.testing.assert_allclose(ours, reference.decision_function(x), atol=1e-4)


def test_each_pass_is_reported_and_can_stop_the_solver():
    x, y = _problem(1)
    seen = []

    def after_pass(n, weights, seconds):
        seen.append((n, float(np.abs(weights).sum())))
        return n < 2

    dual_cd_passes(x.astype(np.float32), y, c=1.0, passes=10, seed=0, after_pass=after_pass)
    assert [n for n, _ in seen] == [0, 1, 2] and seen[0][1] > 0


def linear_svm(**overrides):
    options = {
        "encoder_params": {"bigram_buckets": 1000, "solver": "dual_cd"},
        "epochs": 10,
        "min_token_count": 1,
        "num_threads": 1,
    }
    return TextClassifier("NGramLinear", **{**options, **overrides})


def test_classifier_trains_by_passes_judged_on_dev(toy_train, toy_dev):
    classifier = linear_svm().fit(*toy_train, dev=toy_dev)
    history = classifier.training_["history"]
    assert 1 <= len(history) <= 10 and [h["epoch"] for h in history] == list(
        range(1, len(history) + 1)
    )
    assert history[-1]["train_loss"] < history[0]["train_loss"]  # the SVM objective per doc
    assert classifier.evaluate(*toy_dev)["flat"]["micro_f1"] > 0.9
    best = history[classifier.training_["best_epoch"] - 1]["dev_micro_f1"]
    assert best == max(h["dev_micro_f1"] for h in history)


def test_settings_the_solver_would_ignore_are_errors(toy_train, toy_dev):
    weighted = linear_svm(positive_weight_power=0.5).fit(*toy_train, dev=toy_dev)
    assert weighted.training_["best_epoch"] >= 1
    with pytest.raises(ConfigError, match="squared hinge"):
        linear_svm(loss="focal").fit(*toy_train, dev=toy_dev)
    with pytest.raises(ConfigError, match="recursive_penalty"):
        linear_svm(recursive_penalty=0.1).set_params(hierarchy=True).fit(*toy_train, dev=toy_dev)
    with pytest.raises(ConfigError, match="dropout"):
        linear_svm(encoder_params={"solver": "dual_cd", "dropout": 0.1}).fit(
            *toy_train, dev=toy_dev
        )
    with pytest.raises(ConfigError, match="solver must be"):
        linear_svm(encoder_params={"solver": "newton"}).fit(*toy_train, dev=toy_dev)
