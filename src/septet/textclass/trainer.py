"""The textclass training loop: AdamW, warm-up then linear/cosine decay, gradient clipping,
per-epoch dev evaluation, best state by dev micro-F1, early stopping, a wall-time cap, and
checkpoints that resume exactly (weights, optimizer, schedule, RNG, epoch, history).

Resumption is per epoch: each epoch's shuffle comes from ``seed + epoch`` and torch's RNG state
is saved with the checkpoint, so an interrupted run that resumes gives the same metrics as one
that never stopped.
"""

from __future__ import annotations

import copy
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from septet.common.atomic import atomic_write_bytes
from septet.common.progress import progress_bar
from septet.errors import CheckpointError
from septet.textclass.config import TrainSection
from septet.textclass.features import length_sorted_batches, pad_batch

CHECKPOINT_NAME = "last-checkpoint.pt"


@dataclass
class TrainingResult:
    best_state: dict
    best_epoch: int
    best_score: float
    history: list[dict] = field(default_factory=list)
    documents_per_second: float = 0.0
    stopped_because: str = "epochs"
    cpu_seconds: float = 0.0
    best_dev_probabilities: np.ndarray | None = None  # for tuning thresholds without a rerun


def training_batches(lengths: np.ndarray, batch_size: int, seed: int) -> list[np.ndarray]:
    """One epoch's batches: shuffled, then sorted by length within pools of 50 batches so a
    batch holds documents of similar length (less padding, often twice as fast), then the
    batches shuffled. The same seed gives the same batches, which exact resumption needs."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def lr_multiplier(step: int, total: int, warmup: int, schedule: str) -> float:
    """The learning-rate factor at ``step``: linear warm-up, then linear/cosine decay to 0 or
    constant."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module,
    sequences: Sequence[Sequence[int]],
    batch_size: int,
    device: torch.device,
    *,
    single_label: bool = False,
) -> np.ndarray:
    """Label probabilities ``[docs, labels]`` (softmax when ``single_label``, else sigmoid)."""
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    for batch in length_sorted_batches([len(s) for s in sequences], batch_size):
        ids, mask = pad_batch([sequences[i] for i in batch])
        logits = model(ids.to(device), mask.to(device)).float()
        probs = logits.softmax(1) if single_label else logits.sigmoid()
        if out is None:
            out = np.zeros((len(sequences), probs.shape[1]), dtype=np.float32)
        out[batch] = probs.cpu().numpy()
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


# Embedding tables with at least this many rows get sparse gradients (see make_optimizers).
SPARSE_MIN_ROWS = 1000


def make_optimizers(model: torch.nn.Module, options: TrainSection) -> list:
    """AdamW for the dense parameters and, with ``sparse_embeddings``, a lazy Adam
    (``SparseAdam``) for large embedding tables: a batch touches a few hundred of their rows,
    and updating only those instead of all 50,000 makes a step many times cheaper. Clipping
    and weight decay apply to the dense parameters only."""
    sparse: set[int] = set()
    if options.sparse_embeddings:
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding) and module.num_embeddings >= SPARSE_MIN_ROWS:
                module.sparse = True
                sparse.add(id(module.weight))
    dense_groups, sparse_groups = [], []
    for group in model.parameter_groups(options.learning_rate):
        params = group["params"]
        dense_groups.append({**group, "params": [p for p in params if id(p) not in sparse]})
        sparse_params = [p for p in params if id(p) in sparse]
        if sparse_params:
            sparse_groups.append({**group, "params": sparse_params})
    optimizers = [
        torch.optim.AdamW(
            [g for g in dense_groups if g["params"]],
            lr=options.learning_rate,
            weight_decay=options.weight_decay,
        )
    ]
    if sparse_groups:
        optimizers.append(torch.optim.SparseAdam(sparse_groups, lr=options.learning_rate))
    return optimizers


def apply_threads(num_threads: int) -> None:
    """Use ``num_threads`` CPU threads (0 leaves torch's choice)."""
    if num_threads > 0 and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def _serialise(obj: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def train_model(
    model: torch.nn.Module,
    train_sequences: Sequence[Sequence[int]],
    train_targets: np.ndarray,
    dev_sequences: Sequence[Sequence[int]],
    dev_score: Callable[[np.ndarray], float],
    options: TrainSection,
    *,
    loss_fn: Callable,
    penalty: Callable[[torch.nn.Module], torch.Tensor] | None = None,
    single_label: bool = False,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    fingerprint: str = "",
) -> TrainingResult:
    """Train ``model`` in place; returns the best state (by ``dev_score`` of the dev
    probabilities) and the per-epoch history."""
    from septet.common.device import choose_device

    device = choose_device(options.device)
    apply_threads(options.num_threads)
    model.to(device)
    n = len(train_sequences)
    steps_per_epoch = math.ceil(n / options.batch_size)
    total_steps = steps_per_epoch * options.epochs
    warmup = int(options.warmup_ratio * total_steps)
    optimizers = make_optimizers(model, options)
    schedulers = [
        torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_multiplier(step, total_steps, warmup, options.schedule)
        )
        for optimizer in optimizers
    ]
    dense_parameters = [p for group in optimizers[0].param_groups for p in group["params"]]
    lengths = np.array([len(s) for s in train_sequences])
    targets_all = torch.from_numpy(np.asarray(train_targets, dtype=np.float32))
    result = TrainingResult(
        best_state=copy.deepcopy(model.state_dict()), best_epoch=-1, best_score=-1.0
    )
    start_epoch, stale = 0, 0
    checkpoint = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir else None
    if checkpoint is not None and resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("fingerprint") != fingerprint:
            raise CheckpointError(
                f"{checkpoint} was written by a run with other data or settings; delete it or "
                "set output.resume = false to start over"
            )
        model.load_state_dict(state["model"])
        for optimizer, saved in zip(optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        for scheduler, saved in zip(schedulers, state["schedulers"], strict=True):
            scheduler.load_state_dict(saved)
        torch.set_rng_state(state["rng"])
        start_epoch, stale = int(state["epoch"]) + 1, int(state["stale"])
        result.best_state, result.best_epoch = state["best_state"], int(state["best_epoch"])
        result.best_score, result.history = float(state["best_score"]), list(state["history"])
    started, cpu_started = time.perf_counter(), time.process_time()

    def out_of_budget() -> str | None:
        if options.max_seconds and time.perf_counter() - started >= options.max_seconds:
            return f"time limit ({options.max_seconds:g} s)"
        if options.max_cpu_seconds and time.process_time() - cpu_started >= options.max_cpu_seconds:
            return f"CPU time limit ({options.max_cpu_seconds:g} s)"
        return None

    trained_docs, train_seconds = 0, 0.0
    with progress_bar(total_steps, "training") as bar:
        bar.advance(start_epoch * steps_per_epoch)
        for epoch in range(start_epoch, options.epochs):
            model.train()
            batches = training_batches(lengths, options.batch_size, options.seed + epoch)
            epoch_start, seen, limit = time.perf_counter(), 0, None
            # Summed on the device: reading the loss every step would wait for the GPU.
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            for batch in batches:
                limit = out_of_budget()
                if limit:
                    break  # a cap may cut an epoch short; dev decides as usual
                ids, mask = pad_batch([train_sequences[i] for i in batch])
                targets = targets_all[batch].to(device)
                loss = model.loss(ids.to(device), mask.to(device), targets, loss_fn)
                if penalty is not None:
                    loss = loss + penalty(model)
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if options.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(dense_parameters, options.grad_clip)
                for optimizer in optimizers:
                    optimizer.step()
                for scheduler in schedulers:
                    scheduler.step()
                loss_sum += loss.detach().double() * len(batch)
                seen += len(batch)
                bar.advance()
            train_seconds += time.perf_counter() - epoch_start
            trained_docs += seen
            epoch_loss = float(loss_sum) / max(seen, 1)
            probabilities = predict_probabilities(
                model, dev_sequences, options.eval_batch_size, device, single_label=single_label
            )
            score = float(dev_score(probabilities))
            result.history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": epoch_loss,
                    "dev_micro_f1": score,
                    "documents": seen,
                }
            )
            bar.describe(f"epoch {epoch + 1}: loss {epoch_loss:.4f}, dev micro-F1 {score:.4f}")
            if score > result.best_score:
                result.best_score, result.best_epoch, stale = score, epoch + 1, 0
                result.best_state = copy.deepcopy(model.state_dict())
                result.best_dev_probabilities = probabilities
            else:
                stale += 1
            if checkpoint is not None:
                atomic_write_bytes(
                    checkpoint,
                    _serialise(
                        {
                            "fingerprint": fingerprint,
                            "epoch": epoch,
                            "stale": stale,
                            "model": model.state_dict(),
                            "optimizers": [o.state_dict() for o in optimizers],
                            "schedulers": [s.state_dict() for s in schedulers],
                            "rng": torch.get_rng_state(),
                            "best_state": result.best_state,
                            "best_epoch": result.best_epoch,
                            "best_score": result.best_score,
                            "history": result.history,
                        }
                    ),
                )
            if options.early_stopping and stale >= options.early_stopping:
                result.stopped_because = f"early stopping after epoch {epoch + 1}"
                break
            limit = limit or out_of_budget()
            if limit:
                result.stopped_because = f"{limit} in epoch {epoch + 1}"
                break
    result.documents_per_second = trained_docs / train_seconds if train_seconds else 0.0
    result.cpu_seconds = time.process_time() - cpu_started
    return result
