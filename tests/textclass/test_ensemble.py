"""TextEnsemble: members' probabilities averaged, thresholds tuned on dev for the average."""

import numpy as np
import pytest

from septet.errors import CheckpointError, ConfigError, InputError
from septet.textclass import TextClassifier, TextEnsemble
from septet.textclass.decoding import tune_thresholds
from septet.textclass.ensemble import weight_grid

LABELS = ["sport--football", "sport--tennis", "tech--linux", "tech--chips"]


def cnn(**overrides):
    options = {
        "encoder_params": {"embedding_dim": 16, "num_filters": 8},
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 0.01,
        "min_token_count": 1,
        "num_threads": 1,
        "labels": LABELS,
    }
    return TextClassifier("TextCNN", **{**options, **overrides})


def linear(**overrides):
    options = {
        "encoder_params": {"bigram_buckets": 1000},
        "epochs": 3,
        "batch_size": 16,
        "learning_rate": 0.05,
        "min_token_count": 1,
        "num_threads": 1,
        "labels": LABELS,
    }
    return TextClassifier("NGramLinear", **{**options, **overrides})


@pytest.fixture(scope="module")
def ensemble(toy_train, toy_dev):
    return TextEnsemble([cnn(), linear()], weights=[3, 1]).fit(*toy_train, dev=toy_dev)


def test_probabilities_are_the_weighted_mean_of_the_members(ensemble, toy_dev):
    first, second = (m.predict_proba(toy_dev[0]) for m in ensemble.members)
    expected = 0.75 * first + 0.25 * second
    np.testing.assert_allclose(ensemble.predict_proba(toy_dev[0]), expected, rtol=1e-6)
    assert ensemble.classes_ == ensemble.members[0].classes_


def test_thresholds_are_tuned_on_dev_for_the_average(ensemble, toy_dev):
    space = ensemble.members[0].label_space
    average = ensemble.predict_proba(toy_dev[0])
    expected = tune_thresholds(
        average, space.to_matrix(toy_dev[1]), min_support=5, objective="micro"
    )
    np.testing.assert_array_equal(ensemble.thresholds, expected)
    predictions = ensemble.predict_matrix(toy_dev[0])
    np.testing.assert_array_equal(predictions, (average >= expected).astype(np.int8))
    scores = ensemble.evaluate(*toy_dev)["flat"]
    assert scores["micro_f1"] > 0.9


def test_save_and_load_round_trip(ensemble, toy_dev, tmp_path):
    ensemble.save(tmp_path / "ensemble")
    loaded = TextEnsemble.load(tmp_path / "ensemble")
    np.testing.assert_allclose(
        loaded.predict_proba(toy_dev[0]), ensemble.predict_proba(toy_dev[0]), atol=1e-6
    )
    np.testing.assert_array_equal(loaded.thresholds, ensemble.thresholds)
    assert loaded.predict(toy_dev[0]) == ensemble.predict(toy_dev[0])
    with pytest.raises(CheckpointError, match="not a saved TextEnsemble"):
        TextEnsemble.load(tmp_path / "ensemble" / "member-0")


def test_members_must_share_their_labels(ensemble, toy_train, toy_dev):
    other = cnn(labels=LABELS[:3], epochs=1)
    kept = [[x for x in ls if x in LABELS[:3]] or [LABELS[0]] for ls in toy_train[1]]
    other.fit(toy_train[0], kept, dev=(toy_train[0], kept))
    with pytest.raises(InputError, match=r"member 1 .* other labels"):
        TextEnsemble([ensemble.members[0], other]).predict_proba(toy_dev[0])
    with pytest.raises(InputError, match=r"member 1 .* not trained"):
        TextEnsemble([ensemble.members[0], cnn()]).predict_proba(toy_dev[0])


def test_bad_weights_are_named():
    with pytest.raises(ConfigError, match="one non-negative weight per member"):
        TextEnsemble([cnn(), linear()], weights=[1.0])
    with pytest.raises(ConfigError, match="one non-negative weight per member"):
        TextEnsemble([cnn(), linear()], weights=[0.0, 0.0])
    with pytest.raises(ConfigError, match="at least one member"):
        TextEnsemble([])


def test_weight_grid_covers_the_simplex():
    mixes = [m.tolist() for m in weight_grid(2, 0.25)]
    assert mixes == [[0, 1], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1, 0]]
    three = weight_grid(3, 0.1)
    assert len(three) == 66 and all(abs(m.sum() - 1) < 1e-9 for m in three)
    with pytest.raises(ConfigError, match="up to 3 members"):
        weight_grid(4, 0.1)
    with pytest.raises(ConfigError, match="step"):
        weight_grid(2, 0.3)


def test_tuned_weights_are_the_best_mix_on_dev(ensemble, toy_dev):
    from septet.textclass.metrics import summary_scores

    tuned = TextEnsemble(ensemble.members).tune(*toy_dev, tune_weights=True, step=0.25)
    assert [s["weights"] for s in tuned.tuning_] == [m.tolist() for m in weight_grid(2, 0.25)]
    best = max(tuned.tuning_, key=lambda s: s["dev_micro_f1"])  # the first of equal scores
    assert tuned.weights.tolist() == best["weights"]
    space = tuned.members[0].label_space
    truth = space.to_matrix(toy_dev[1])
    parts = [m.predict_proba(toy_dev[0]) for m in tuned.members]
    for score in tuned.tuning_:  # each mix was scored with its own tuned thresholds
        average = sum(w * p for w, p in zip(score["weights"], parts, strict=True))
        thresholds = tune_thresholds(average, truth, min_support=5, objective="micro")
        predicted = (average >= thresholds).astype(np.int8)
        expected = summary_scores(truth, predicted)["micro_f1"]
        assert score["dev_micro_f1"] == pytest.approx(expected, abs=1e-6)
