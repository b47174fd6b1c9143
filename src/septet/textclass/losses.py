"""Training losses over label logits ``[batch, labels]`` and 0/1 targets of the same shape."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from septet.errors import ConfigError

LOSSES = ("bce", "softmax_ce", "focal")


def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the softmax over labels against the target distribution (a document
    with k labels puts 1/k on each, as NeuralClassifier's SoftmaxCrossEntropy does)."""
    distribution = targets / targets.sum(1, keepdim=True).clamp_min(1.0)
    return -(distribution * F.log_softmax(logits, dim=1)).sum(1).mean()


def binary_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Independent sigmoid per label, mean over documents and labels; ``pos_weight
    [labels]`` multiplies the loss of each label's positive examples."""
    return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)


def positive_weights(targets, power: float, cap: float = 100.0) -> torch.Tensor:
    """Per-label weights of positive examples, ``(negatives / positives) ** power`` from the
    training targets ``[docs, labels]`` (counts smoothed by 1), clipped to ``[1, cap]``:
    power 0 weighs every example alike, 1 balances positives and negatives, 0.5 (the square
    root) is the usual middle. Rare labels then pull harder on the shared features."""
    import numpy as np

    targets = np.asarray(targets, dtype=np.float64)
    positives = targets.sum(0) + 1.0
    negatives = targets.shape[0] - targets.sum(0) + 1.0
    return torch.from_numpy(np.clip((negatives / positives) ** power, 1.0, cap)).float()


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0, alpha: float = 0.25
) -> torch.Tensor:
    """Lin et al. (2017): BCE down-weighted by ``(1 - p_t)^gamma`` so easy negatives (most
    labels of most documents) stop dominating; ``alpha`` weighs positives, ``1 - alpha``
    negatives (alpha < 0 turns the weighting off)."""
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = logits.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_t).pow(gamma)
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum(1).mean()


def make_loss(
    name: str,
    *,
    focal_gamma: float = 2.0,
    focal_alpha: float = 0.25,
    pos_weight: torch.Tensor | None = None,
):
    """The loss function called ``name`` (bce, softmax_ce or focal); ``pos_weight`` (bce
    only) weighs each label's positives, see :func:`positive_weights`."""
    if pos_weight is not None and name != "bce":
        raise ConfigError(f"positive weights apply to the bce loss, not {name!r}")
    if name == "bce":
        if pos_weight is not None:
            return lambda logits, targets: binary_cross_entropy(
                logits, targets, pos_weight.to(logits.device)
            )
        return binary_cross_entropy
    if name == "softmax_ce":
        return softmax_cross_entropy
    if name == "focal":
        return lambda logits, targets: focal_loss(logits, targets, focal_gamma, focal_alpha)
    raise ConfigError(f"unknown loss {name!r}; use one of {', '.join(LOSSES)}")
