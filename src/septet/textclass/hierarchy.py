"""Using the label hierarchy: recursive regularisation and hierarchy-consistent decoding."""

from __future__ import annotations

import numpy as np
import torch


def recursive_regularization(weight: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Gopal & Yang's recursive regularisation, as NeuralClassifier applies it to the output
    layer: ``sum over (parent, child) of 0.5 * ||w_parent - w_child||^2``, where ``w`` are the
    rows of ``weight [labels, features]`` and ``edges [E, 2]`` holds (parent, child) ids. It
    pulls a child's classifier toward its parent's, so rare children borrow strength."""
    if edges.numel() == 0:
        return weight.new_zeros(())
    difference = weight[edges[:, 0]] - weight[edges[:, 1]]
    return 0.5 * difference.pow(2).sum()


def add_ancestors(predictions: np.ndarray, ancestor_matrix: np.ndarray) -> np.ndarray:
    """Hierarchy-consistent decoding: every predicted label also predicts its ancestors.
    ``predictions [docs, labels]`` is 0/1; ``ancestor_matrix[i, j]`` is True when j is i or
    an ancestor of i."""
    closed = (predictions.astype(np.float32) @ ancestor_matrix.astype(np.float32)) > 0
    return closed.astype(predictions.dtype)
