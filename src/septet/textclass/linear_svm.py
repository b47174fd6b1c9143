"""Dual coordinate descent for one-vs-rest L2-regularised linear SVMs with the squared hinge
loss (Hsieh et al., "A dual coordinate descent method for large-scale linear SVM", ICML 2008),
all labels at once: NGramLinear's ``solver = "dual_cd"``.

Each label l solves ``min_w 0.5 ||w||^2 + C sum_i max(0, 1 - y_il w.x_i)^2`` (y = +-1; a
constant feature 1 per document gives the bias, regularised like the weights). Its dual has
one variable per document, ``alpha_il >= 0``; a pass visits the documents in random order and
moves each document's alphas, for every label together, to the optimum of their one-variable
problem, keeping ``w = sum_i alpha_il y_il x_i`` up to date. Each pass costs a few sparse rows
times the labels; the primal solution improves monotonically.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp


def dual_cd_passes(
    features: sp.csr_matrix,
    targets: np.ndarray,
    *,
    c: float,
    passes: int,
    seed: int,
    positive_weights: np.ndarray | None = None,
    after_pass: Callable[[int, np.ndarray, float], bool] | None = None,
) -> np.ndarray:
    """Weights ``[features + 1, labels]`` (the last row is the bias) of the one-vs-rest
    squared-hinge SVMs of ``features [docs, features]`` (rows of unit norm or any) and 0/1
    ``targets [docs, labels]``. ``positive_weights [labels]`` multiply C for each label's
    positive documents (scikit-learn's class_weight). ``after_pass(pass, weights, seconds)``
    is called after each pass and stops the solver by returning False."""
    docs, width = features.shape
    x = sp.hstack([features, np.ones((docs, 1), dtype=np.float32)], format="csr")
    x.sort_indices()
    y = np.where(np.asarray(targets) > 0, 1.0, -1.0).astype(np.float32)
    weights = np.zeros((width + 1, y.shape[1]), dtype=np.float32)
    alpha = np.zeros_like(y)
    # D_ii = 1 / (2 C_i) of the squared hinge's dual, per document and label.
    cost = np.full_like(y, c)
    if positive_weights is not None:
        cost = np.where(y > 0, c * np.asarray(positive_weights, np.float32)[None, :], cost)
    diagonal = (0.5 / cost).astype(np.float32)
    squared_norms = np.asarray(x.multiply(x).sum(1)).astype(np.float32) + diagonal
    rng = np.random.default_rng(seed)
    indptr, indices, data = x.indptr, x.indices, x.data.astype(np.float32)
    for n in range(passes):
        started = time.perf_counter()
        for i in rng.permutation(docs):
            columns = indices[indptr[i] : indptr[i + 1]]
            values = data[indptr[i] : indptr[i + 1]]
            rows = weights[columns]  # [nnz, labels]
            gradient = y[i] * (values @ rows) - 1.0 + diagonal[i] * alpha[i]
            # Projected onto alpha >= 0: at the bound only a negative gradient moves it.
            old = alpha[i]
            new = np.maximum(old - gradient / squared_norms[i], 0.0)
            change = (new - old) * y[i]
            alpha[i] = new
            weights[columns] = rows + values[:, None] * change[None, :]
        if after_pass is not None and not after_pass(n, weights, time.perf_counter() - started):
            break
    return weights


def bag_matrix(encoder, sequences, batch_size: int = 512) -> sp.csr_matrix:
    """The NGramLinear encoder's TF-IDF bags of ``sequences`` (token ids) as a sparse matrix
    ``[docs, encoder.num_rows]``."""
    import torch

    from septet.textclass.features import pad_batch

    parts = []
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            bag = encoder(*pad_batch(list(sequences[start : start + batch_size])))
            rows, weights = bag.rows.cpu().numpy(), bag.weights.cpu().numpy()
            docs = np.repeat(np.arange(rows.shape[0]), rows.shape[1])
            keep = weights.ravel() != 0
            parts.append(
                sp.csr_matrix(
                    (weights.ravel()[keep], (docs[keep], rows.ravel()[keep])),
                    shape=(rows.shape[0], encoder.num_rows),
                    dtype=np.float32,
                )
            )
    encoder.train(was_training)
    return sp.vstack(parts, format="csr")


def solve_ngram_linear(
    model, train_ids, train_targets, dev_ids, dev_score, options, positive_weights=None
):
    """Train an NGramLinear model with ``dual_cd_passes``: one pass per epoch (at most
    ``options.epochs``), each judged on dev like a gradient epoch (best pass kept, early
    stopping, time and CPU limits); returns a trainer.TrainingResult."""
    import copy

    import torch

    from septet.textclass.trainer import TrainingResult

    encoder, head = model.encoder, model.head
    train_x = bag_matrix(encoder, train_ids)
    dev_x = bag_matrix(encoder, dev_ids)
    targets = np.asarray(train_targets)
    y = np.where(targets > 0, 1.0, -1.0)
    result = TrainingResult(
        best_state=copy.deepcopy(model.state_dict()), best_epoch=-1, best_score=-1.0
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    stale, solve_seconds = 0, 0.0
    c = encoder.params.c

    def after_pass(n: int, weights: np.ndarray, seconds: float) -> bool:
        nonlocal stale, solve_seconds
        solve_seconds += seconds
        margins = train_x @ weights[:-1] + weights[-1]
        hinge = np.maximum(0.0, 1.0 - y * margins)
        if positive_weights is not None:
            hinge = hinge * np.sqrt(np.where(y > 0, positive_weights[None, :], 1.0))
        objective = 0.5 * float((weights.astype(np.float64) ** 2).sum()) + c * float(
            (hinge**2).sum()
        )
        dev_probabilities = 1.0 / (1.0 + np.exp(-(dev_x @ weights[:-1] + weights[-1])))
        score = float(dev_score(dev_probabilities.astype(np.float32)))
        result.history.append(
            {
                "epoch": n + 1,
                "train_loss": objective / len(y),
                "dev_micro_f1": score,
                "documents": len(y),
            }
        )
        if score > result.best_score:
            result.best_score, result.best_epoch, stale = score, n + 1, 0
            with torch.no_grad():
                head.table.weight.copy_(torch.from_numpy(weights[:-1]))
                head.bias.copy_(torch.from_numpy(weights[-1]))
            result.best_state = copy.deepcopy(model.state_dict())
            result.best_dev_probabilities = dev_probabilities.astype(np.float32)
        else:
            stale += 1
        if options.early_stopping and stale >= options.early_stopping:
            result.stopped_because = f"early stopping after pass {n + 1}"
            return False
        if options.max_seconds and time.perf_counter() - started >= options.max_seconds:
            result.stopped_because = f"time limit ({options.max_seconds:g} s) after pass {n + 1}"
            return False
        if options.max_cpu_seconds and time.process_time() - cpu_started >= options.max_cpu_seconds:
            result.stopped_because = (
                f"CPU time limit ({options.max_cpu_seconds:g} s) after pass {n + 1}"
            )
            return False
        return True

    dual_cd_passes(
        train_x,
        targets,
        c=c,
        passes=options.epochs,
        seed=options.seed,
        positive_weights=positive_weights,
        after_pass=after_pass,
    )
    passes = len(result.history)
    result.documents_per_second = passes * len(y) / solve_seconds if solve_seconds else 0.0
    result.cpu_seconds = time.process_time() - cpu_started
    return result
