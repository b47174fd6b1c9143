"""Recursive regularisation, hierarchy-consistent decoding, HMCN."""

import numpy as np
import pytest
import torch

from septet.textclass.classifier import TextClassifier
from septet.textclass.hierarchy import add_ancestors, recursive_regularization
from septet.textclass.taxonomy import Taxonomy
from septet.textclass.vocabulary import LabelSpace


def test_recursive_regularization_hand_computed():
    weight = torch.tensor([[1.0, 2.0], [0.0, 2.0], [3.0, -1.0], [1.0, 1.0]])
    edges = torch.tensor([[0, 1], [0, 2], [2, 3]])  # (parent, child)
    # 0.5 * (|(1,0)|^2 + |(-2,3)|^2 + |(2,-2)|^2) = 0.5 * (1 + 13 + 8) = 11
    value = recursive_regularization(weight, edges)
    assert value.item() == pytest.approx(11.0)


def test_recursive_regularization_gradient_pulls_child_to_parent():
    weight = torch.tensor([[1.0], [3.0]], requires_grad=True)
    recursive_regularization(weight, torch.tensor([[0, 1]])).backward()
    assert weight.grad.flatten().tolist() == [-2.0, 2.0]
    assert recursive_regularization(weight, torch.zeros(0, 2, dtype=torch.long)).item() == 0.0


def test_consistent_decoding_adds_ancestors():
    space = LabelSpace(Taxonomy.from_paths(["A--B--C", "D"]), hierarchical=True)
    predictions = np.zeros((2, len(space)), dtype=np.int8)
    predictions[0, space.index["A--B--C"]] = 1
    predictions[1, space.index["D"]] = 1
    closed = add_ancestors(predictions, space.ancestor_matrix())
    assert space.decode(closed[0]) == ["A", "A--B", "A--B--C"]
    assert space.decode(closed[1]) == ["D"]


def test_hmcn_trains_and_predicts(toy_train, toy_dev):
    classifier = TextClassifier(
        "HMCN",
        hierarchy=True,
        encoder_params={"embedding_dim": 32, "hidden_dim": 32, "global_dim": 32, "local_dim": 32},
        epochs=8,
        batch_size=16,
        learning_rate=0.01,
        min_token_count=1,
        num_threads=1,
        seed=3,
    )
    classifier.fit(*toy_train, dev=toy_dev)
    predicted = classifier.predict(toy_dev[0][:5])
    assert all(isinstance(labels, list) for labels in predicted)
    for labels in predicted:  # consistent decoding: a leaf comes with its parent
        for label in labels:
            if "--" in label:
                assert label.split("--")[0] in labels
    metrics = classifier.evaluate(*toy_dev)
    assert set(metrics["levels"]) == {"1", "2"}
    assert metrics["flat"]["micro_f1"] >= 0.9
