"""TextClassifier end to end: learning a separable toy set, reproducibility, save/load, resume."""

import json

import numpy as np
import pytest

from septet.errors import CheckpointError, ConfigError, InputError
from septet.textclass.classifier import TextClassifier
from septet.textclass.taxonomy import Taxonomy


def small_cnn(**overrides):
    options = {
        "encoder_params": {"embedding_dim": 32, "num_filters": 16},
        "epochs": 6,
        "batch_size": 16,
        "learning_rate": 0.01,
        "min_token_count": 1,
        "num_threads": 1,
        "seed": 11,
    }
    options.update(overrides)
    return TextClassifier("TextCNN", **options)


@pytest.fixture(scope="module")
def trained(toy_train, toy_dev):
    return small_cnn().fit(*toy_train, dev=toy_dev)


def test_learns_a_separable_toy_set(trained, toy_dev):
    metrics = trained.evaluate(*toy_dev)
    assert metrics["flat"]["micro_f1"] >= 0.95
    assert metrics["flat"]["macro_f1"] >= 0.95
    assert trained.training_["best_epoch"] >= 1


def test_rerun_gives_identical_metrics(trained, toy_train, toy_dev):
    again = small_cnn().fit(*toy_train, dev=toy_dev)
    assert again.training_["history"] == trained.training_["history"]
    np.testing.assert_array_equal(
        again.predict_proba(toy_dev[0]), trained.predict_proba(toy_dev[0])
    )


def test_predict_proba_columns_are_classes(trained, toy_dev):
    probabilities = trained.predict_proba(toy_dev[0][:3])
    assert probabilities.shape == (3, len(trained.classes_))
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert trained.predict(["goal striker penalty offside goal"]) == [["sport--football"]]


def test_save_and_load_round_trip(trained, toy_dev, tmp_path):
    folder = trained.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "textclass.json"]
    loaded = TextClassifier.load(folder)
    np.testing.assert_array_equal(
        loaded.predict_proba(toy_dev[0]), trained.predict_proba(toy_dev[0])
    )
    assert loaded.predict(toy_dev[0]) == trained.predict(toy_dev[0])
    trained.save(folder)  # saving over an existing model replaces it whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_load_names_mismatched_weights(trained, tmp_path):
    folder = trained.save(tmp_path / "model")
    meta = json.loads((folder / "textclass.json").read_text())
    meta["encoder_params"]["num_filters"] = 8
    (folder / "textclass.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError,
        match=r"mis-shaped: .*encoder\.convs\.0\.weight \(file \(16, 32, 2\), model \(8, 32, 2\)\)",
    ):
        TextClassifier.load(folder)
    with pytest.raises(CheckpointError, match="not a saved TextClassifier"):
        TextClassifier.load(tmp_path)


def test_hierarchy_from_taxonomy_file(toy_files, toy_train, toy_dev):
    path = toy_files["taxonomy"]
    classifier = small_cnn(epochs=4, recursive_penalty=0.01).set_params(hierarchy=str(path))
    classifier.fit(*toy_train, dev=toy_dev)
    assert classifier.classes_[:2] == ["sport", "tech"]  # parents first
    metrics = classifier.evaluate(*toy_dev)
    assert metrics["levels"]["1"]["micro_f1"] >= 0.95
    with pytest.raises(InputError, match="'sport--golf'"):
        classifier.evaluate(["a"], [["sport--golf"]])


def test_resume_after_a_crash_continues_exactly(tmp_path, toy_train, toy_dev, monkeypatch):
    import septet.textclass.trainer as trainer

    whole = small_cnn(epochs=4, early_stopping=0).fit(*toy_train, dev=toy_dev)
    # Crash while evaluating epoch 3: the checkpoint on disk then holds epoch 2.
    real, calls = trainer.predict_probabilities, []

    def crashing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "predict_probabilities", crashing)
    with pytest.raises(KeyboardInterrupt):
        small_cnn(epochs=4, early_stopping=0).fit(*toy_train, dev=toy_dev, checkpoint_dir=tmp_path)
    monkeypatch.setattr(trainer, "predict_probabilities", real)
    resumed = small_cnn(epochs=4, early_stopping=0).fit(
        *toy_train, dev=toy_dev, checkpoint_dir=tmp_path, resume=True
    )
    assert resumed.training_["history"] == whole.training_["history"]
    np.testing.assert_array_equal(
        resumed.predict_proba(toy_dev[0]), whole.predict_proba(toy_dev[0])
    )
    other = small_cnn(epochs=4, early_stopping=0, learning_rate=0.02)
    with pytest.raises(CheckpointError, match="other data or settings"):
        other.fit(*toy_train, dev=toy_dev, checkpoint_dir=tmp_path, resume=True)


def test_time_cap_stops_training(toy_train, toy_dev):
    capped = small_cnn(epochs=50, max_seconds=1e-9).fit(*toy_train, dev=toy_dev)
    assert capped.training_["stopped_because"].startswith("time limit")
    assert len(capped.training_["history"]) == 1
    cpu_capped = small_cnn(epochs=50, max_cpu_seconds=1e-9).fit(*toy_train, dev=toy_dev)
    assert cpu_capped.training_["stopped_because"].startswith("CPU time limit")


def test_multi_class_with_softmax(toy_train, toy_dev):
    single = [(t, labs[0].split("--")[0]) for t, labs in zip(*toy_train, strict=True)]
    texts, labels = [t for t, _ in single], [lab for _, lab in single]
    classifier = small_cnn(epochs=3).set_params(
        multi_label=False, loss="softmax_ce", decoding="argmax"
    )
    classifier.fit(texts, labels)
    predictions = classifier.predict(texts[:10])
    assert all(p in ("sport", "tech") for p in predictions)
    assert np.allclose(classifier.predict_proba(texts[:4]).sum(1), 1.0, atol=1e-5)
    with pytest.raises(InputError, match="needs exactly one"):
        classifier.fit(["a b"], [["sport", "tech"]])


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="2 training texts but 1 label lists"):
        small_cnn().fit(["a", "b"], [["x"]])
    with pytest.raises(InputError, match="not trained yet"):
        small_cnn().predict(["a"])
    with pytest.raises(InputError, match="must be a list of strings"):
        small_cnn().fit("abc", [["x"]])


def test_taxonomy_object_is_accepted(toy_train, toy_dev):
    taxonomy = Taxonomy.from_paths([label for labels in toy_train[1] for label in labels])
    classifier = small_cnn(epochs=2).set_params(hierarchy=taxonomy)
    classifier.fit(*toy_train, dev=toy_dev)
    assert "sport" in classifier.classes_


def test_large_embedding_tables_train_with_a_lazy_sparse_adam(toy_train, toy_dev):
    import torch

    from septet.textclass.config import TrainSection
    from septet.textclass.model import build_model
    from septet.textclass.trainer import make_optimizers

    model = build_model("FastText", 50, {"bigram_buckets": 2000}, [1, 1], [-1, -1])
    dense, sparse = make_optimizers(model, TrainSection())
    assert isinstance(dense, torch.optim.AdamW)
    assert isinstance(sparse, torch.optim.SparseAdam)
    assert [p.shape for g in sparse.param_groups for p in g["params"]] == [(2000, 128)]
    assert model.encoder.bigrams.sparse and not model.encoder.embedding.sparse  # 50 rows: dense
    classifier = TextClassifier(
        "FastText",
        encoder_params={"bigram_buckets": 2000},
        epochs=8,
        learning_rate=0.05,
        batch_size=16,
        min_token_count=1,
        num_threads=1,
    )
    classifier.fit(*toy_train, dev=toy_dev)
    assert classifier.evaluate(*toy_dev)["flat"]["micro_f1"] >= 0.95


def test_rare_labels_get_heavier_positives_and_a_prior_bias(toy_train, toy_dev):
    from septet.errors import ConfigError

    # Keep one label rare: 4 of 160 training documents.
    texts, labels, rare_kept = [], [], 0
    for text, labs in zip(*toy_train, strict=True):
        if "tech--chips" in labs:
            if rare_kept == 4:
                continue
            rare_kept += 1
        texts.append(text)
        labels.append(labs)
    options = {
        "encoder_params": {"bigram_buckets": 0, "embedding_dim": 16},
        "epochs": 6,
        "learning_rate": 0.05,
        "batch_size": 16,
        "min_token_count": 1,
        "num_threads": 1,
    }
    weighted = TextClassifier("FastText", positive_weight_power=0.5, **options)
    weighted.fit(texts, labels, dev=toy_dev)
    assert weighted.evaluate(*toy_dev)["flat"]["micro_f1"] >= 0.9
    # The prior bias: before any step, each label's output bias is its frequency's log-odds.
    untrained = TextClassifier("FastText", **{**options, "max_cpu_seconds": 1e-9})
    untrained.fit(texts, labels, dev=toy_dev)
    column = untrained.classes_.index("tech--chips")
    frequency = (4 + 0.5) / (len(texts) + 1)
    bias = untrained.model.head.linear.bias.detach()
    assert float(bias[column].sigmoid()) == pytest.approx(frequency)
    with pytest.raises(ConfigError, match="applies to the bce loss, not 'focal'"):
        TextClassifier("FastText", loss="focal", positive_weight_power=0.5, **options).fit(
            texts, labels, dev=toy_dev
        )


def test_epochs_are_judged_at_their_best_single_threshold(toy_train, toy_dev):
    from septet.textclass.decoding import tune_global_threshold
    from septet.textclass.metrics import summary_scores

    classifier = small_cnn(epochs=2, early_stopping=0).fit(*toy_train, dev=toy_dev)
    dev_probabilities = classifier.predict_proba(toy_dev[0])  # the best epoch's model
    truth = classifier.label_space.to_matrix(toy_dev[1])
    threshold = np.float32(tune_global_threshold(dev_probabilities, truth))
    expected = summary_scores(truth, (dev_probabilities >= threshold).astype(np.int8))
    best = classifier.training_["history"][classifier.training_["best_epoch"] - 1]
    assert best["dev_micro_f1"] == pytest.approx(expected["micro_f1"])


def _hierarchical(**overrides):
    taxonomy = Taxonomy.from_paths(sorted(CUE_LABELS))
    return small_cnn(**overrides).set_params(hierarchy=taxonomy)


CUE_LABELS = ["sport--football", "sport--tennis", "tech--linux", "tech--chips"]


def test_selection_level_judges_epochs_by_that_levels_micro_f1(toy_train, toy_dev):
    from septet.textclass.decoding import tune_global_threshold
    from septet.textclass.hierarchy import add_ancestors
    from septet.textclass.metrics import summary_scores

    classifier = _hierarchical(epochs=1, early_stopping=0, selection_level=2)
    classifier.fit(*toy_train, dev=toy_dev)
    space = classifier.label_space
    leaves = space.levels == 2
    probabilities = classifier.predict_proba(toy_dev[0])
    truth = space.to_matrix(toy_dev[1])
    threshold = np.float32(tune_global_threshold(probabilities[:, leaves], truth[:, leaves]))
    predicted = add_ancestors((probabilities >= threshold).astype(np.int8), space.ancestor_matrix())
    expected = summary_scores(truth[:, leaves], predicted[:, leaves])["micro_f1"]
    assert classifier.training_["history"][0]["dev_micro_f1"] == pytest.approx(expected)
    everything = _hierarchical(epochs=1, early_stopping=0).fit(*toy_train, dev=toy_dev)
    assert everything.training_["history"][0]["dev_micro_f1"] != pytest.approx(expected)


def test_thresholds_per_level_tune_each_level_on_its_own(toy_train, toy_dev):
    from septet.textclass.decoding import tune_thresholds

    classifier = _hierarchical(epochs=1, thresholds_per_level=True)
    classifier.fit(*toy_train, dev=toy_dev)
    space = classifier.label_space
    probabilities = classifier.predict_proba(toy_dev[0])
    truth = space.to_matrix(toy_dev[1])
    np.testing.assert_array_equal(
        classifier.tune_thresholds(probabilities, truth), classifier.thresholds
    )
    # Noisy scores of frequent parents and rarer children (the toy set is too separable
    # for the two ways of tuning to differ).
    rng = np.random.default_rng(0)
    frequency = np.where(space.levels == 1, 0.5, 0.1)
    truth = (rng.random((400, len(frequency))) < frequency).astype(np.int8)
    probabilities = 1 / (1 + np.exp(-(2 * truth - 1 + rng.normal(0, 1.5, truth.shape))))
    classifier.thresholds = classifier.tune_thresholds(probabilities, truth)
    for level in (1, 2):
        columns = space.levels == level
        alone = tune_thresholds(
            probabilities[:, columns], truth[:, columns], min_support=5, objective="micro"
        )
        np.testing.assert_array_equal(classifier.thresholds[columns], alone)
    together = tune_thresholds(probabilities, truth, min_support=5, objective="micro")
    assert not np.array_equal(classifier.thresholds, together)  # the option changes something
    flat = classifier.set_params(thresholds_per_level=False)
    np.testing.assert_array_equal(flat.tune_thresholds(probabilities, truth), together)


def test_selection_level_must_be_a_level_of_the_hierarchy(toy_train, toy_dev):
    with pytest.raises(ConfigError, match=r"selection_level = 3 is not a level.*\[1, 2\]"):
        _hierarchical(epochs=1, selection_level=3).fit(*toy_train, dev=toy_dev)
    with pytest.raises(ConfigError, match="needs a hierarchy"):
        small_cnn(epochs=1, selection_level=2).fit(*toy_train, dev=toy_dev)
