"""Training losses against hand-computed values, and per-label positive weights."""

import math

import numpy as np
import pytest
import torch

from septet.errors import ConfigError
from septet.textclass.losses import make_loss, positive_weights

LOGITS = torch.tensor([[0.0, 2.0], [-1.0, 1.0]])
TARGETS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bce_is_the_mean_over_documents_and_labels():
    expected = (
        -(
            math.log(sigmoid(0.0))
            + math.log(1 - sigmoid(2.0))
            + math.log(1 - sigmoid(-1.0))
            + math.log(sigmoid(1.0))
        )
        / 4
    )
    assert float(make_loss("bce")(LOGITS, TARGETS)) == pytest.approx(expected)


def test_positive_weights_scale_only_the_positive_terms():
    weight = torch.tensor([3.0, 0.5])
    expected = (
        -(
            3.0 * math.log(sigmoid(0.0))
            + math.log(1 - sigmoid(2.0))
            + math.log(1 - sigmoid(-1.0))
            + 0.5 * math.log(sigmoid(1.0))
        )
        / 4
    )
    assert float(make_loss("bce", pos_weight=weight)(LOGITS, TARGETS)) == pytest.approx(expected)


def test_positive_weights_from_label_frequencies():
    targets = np.zeros((99, 3))
    targets[:9, 0] = 1  # (90 + 1) / (9 + 1) = 9.1 negatives per positive
    targets[:60, 1] = 1  # more positives than negatives: never below 1
    weights = positive_weights(targets, 0.5).tolist()
    assert weights == pytest.approx([math.sqrt(9.1), 1.0, math.sqrt(100.0)])
    assert positive_weights(targets, 1.0, cap=50.0).tolist() == pytest.approx([9.1, 1.0, 50.0])
    assert positive_weights(targets, 0.0).tolist() == [1.0, 1.0, 1.0]


def test_focal_loss_hand_computed():
    logits, targets = torch.tensor([[2.0]]), torch.tensor([[1.0]])
    p = sigmoid(2.0)
    expected = 0.25 * (1 - p) ** 2 * -math.log(p)
    assert float(make_loss("focal")(logits, targets)) == pytest.approx(expected)
    negative = float(make_loss("focal", focal_alpha=-1.0)(logits, 1 - targets))
    assert negative == pytest.approx(p**2 * -math.log(1 - p))


def test_softmax_cross_entropy_spreads_the_target_over_a_documents_labels():
    logits, targets = torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    log_p = 1.0 - math.log(2 * math.e + 1)
    assert float(make_loss("softmax_ce")(logits, targets)) == pytest.approx(-log_p)


def test_positive_weights_are_for_bce_only():
    with pytest.raises(ConfigError, match="bce loss, not 'focal'"):
        make_loss("focal", pos_weight=torch.ones(2))
