"""A training loop for any torch model: AdamW, warmup then linear or cosine decay, gradient
accumulation, gradient clipping, bf16 autocast where the device supports it, evaluation with
the best checkpoint kept by a metric, early stopping, and checkpoints that resume exactly.

What a caller gives:
- ``model``: a ``torch.nn.Module``;
- ``compute_loss(model, batch) -> loss`` (or ``(loss, {"name": value, ...})``): one forward pass
  on one micro-batch, returning a scalar tensor;
- ``train_data``: any re-iterable of batches (a ``DataLoader``, a list); tensors inside dicts,
  lists and tuples are moved to the device;
- optionally ``evaluate(model) -> {"metric": value}``, called every ``eval_every`` steps and at
  the end, and callbacks (:class:`TrainerCallback`).

"Exactly" means: a run stopped after k optimizer steps and resumed from its checkpoint ends
with bit-identical weights to a run that never stopped (on CPU; tests/common/test_training.py
checks it). For that a checkpoint holds the model, the optimizer and scheduler, every random
generator's state (now and at the start of the epoch, so a shuffled loader replays the same
order) and the position in the epoch; resuming replays the epoch's order and skips the
batches already used.

Checkpoints are folders ``step-00000042/`` written under a temporary name and renamed into
place, so a crash leaves either the whole checkpoint or none of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from septet.common.atomic import atomic_write_json, fsync_directory
from septet.common.config import dataclass_from_dict
from septet.common.device import choose_device
from septet.common.progress import progress_bar
from septet.errors import CheckpointError, ConfigError, SeptetError

if TYPE_CHECKING:
    import torch

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
CHECKPOINT_PREFIX = "step-"
STATE_FILE = "training_state.pt"
MODEL_FILE = "model_state.pt"
BEST_FILE = "best.json"


class TrainingDivergedError(SeptetError):
    """The loss became NaN or infinite."""


@dataclass
class OptimizerConfig:
    """AdamW and its learning-rate schedule: linear warmup from 0, then ``schedule`` decay to
    ``min_lr_ratio * learning_rate`` at the last step."""

    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0: a fraction of the total steps
    schedule: str = "linear"
    min_lr_ratio: float = 0.0
    max_grad_norm: float | None = 1.0  # None: no clipping

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if self.warmup_steps < 0 or not 0 <= self.warmup_ratio < 1:
            raise ConfigError("warmup_steps must be >= 0 and warmup_ratio in [0, 1)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ConfigError("max_grad_norm must be positive (or None for no clipping)")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> OptimizerConfig:
        """Read from a plain dict; unknown keys are errors."""
        return dataclass_from_dict(cls, values, "optimizer")


@dataclass
class TrainingConfig:
    """How long to train and what to keep. A step is one optimizer update, made of
    ``gradient_accumulation_steps`` micro-batches."""

    epochs: int = 1
    max_steps: int | None = None  # overrides epochs when set
    gradient_accumulation_steps: int = 1
    precision: str = "auto"  # auto: bf16 autocast on CUDA with bf16 support, else fp32
    seed: int = 0
    device: str | None = None  # None: SEPTET_DEVICE or the best available
    log_every: int = 10
    eval_every: int | None = None  # steps; None: only at the end
    checkpoint_dir: str | None = None  # None: no checkpoints
    checkpoint_every: int | None = None  # steps; None: at the end only (if checkpoint_dir)
    keep_checkpoints: int = 2  # most recent kept; the best one is kept too
    best_metric: str | None = None  # a key of evaluate()'s result
    greater_is_better: bool = True
    early_stopping_patience: int | None = None  # evaluations without improvement
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    def __post_init__(self) -> None:
        if isinstance(self.optimizer, Mapping):
            self.optimizer = OptimizerConfig.from_dict(self.optimizer)
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.gradient_accumulation_steps < 1:
            raise ConfigError("gradient_accumulation_steps must be >= 1")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        for name in ("log_every", "eval_every", "checkpoint_every", "early_stopping_patience"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 (or None), got {value}")
        if self.keep_checkpoints < 1:
            raise ConfigError("keep_checkpoints must be >= 1")
        if self.early_stopping_patience is not None and self.best_metric is None:
            raise ConfigError("early_stopping_patience needs best_metric to know what improves")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """Read from a plain dict (``optimizer`` may be a nested dict); unknown keys are errors."""
        return dataclass_from_dict(cls, values, "training")


@dataclass
class TrainState:
    """Where training is; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # the epoch in progress (0-based)
    batches_in_epoch: int = 0  # micro-batches of that epoch already used
    total_steps: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evaluations_without_improvement: int = 0
    should_stop: bool = False  # a callback (or early stopping) sets this to end training


class TrainerCallback:
    """Hooks into the loop; override the ones you need. Set ``state.should_stop`` to stop."""

    def on_step_end(self, state: TrainState, logs: dict[str, float]) -> None:
        """After each optimizer step, with the loss, learning rate and any loss metrics."""

    def on_evaluate(self, state: TrainState, metrics: dict[str, float]) -> None:
        """After each evaluation."""

    def on_checkpoint(self, state: TrainState, path: Path) -> None:
        """After a checkpoint folder is complete."""

    def on_train_end(self, state: TrainState) -> None:
        """Once, when the loop ends (finished, stopped early or stopped by a callback)."""


@dataclass
class TrainResult:
    """What :meth:`Trainer.train` returns."""

    state: TrainState
    history: list[dict[str, float]]  # one entry per logged step
    evaluations: list[dict[str, float]]  # one entry per evaluation, with its "step"
    last_checkpoint: Path | None
    best_checkpoint: Path | None


class WarmupDecay:
    """The learning-rate multiplier at a step: linear warmup, then linear/cosine/constant decay."""

    def __init__(self, warmup_steps: int, total_steps: int, schedule: str, min_ratio: float):
        self.warmup_steps = warmup_steps
        self.total_steps = max(total_steps, 1)
        self.schedule = schedule
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.schedule == "constant":
            return 1.0
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        if self.schedule == "linear":
            decay = 1.0 - progress
        else:
            decay = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_ratio + (1.0 - self.min_ratio) * decay


LossFunction = Callable[[Any, Any], Any]


class Trainer:
    """Runs the loop; see the module docstring for what each argument is."""

    def __init__(
        self,
        model: torch.nn.Module,
        compute_loss: LossFunction,
        train_data: Iterable[Any],
        config: TrainingConfig | None = None,
        *,
        evaluate: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
        callbacks: Sequence[TrainerCallback] = (),
    ):
        import torch

        self.config = config or TrainingConfig()
        self.device = choose_device(self.config.device)
        self.model = model.to(self.device)
        self.compute_loss = compute_loss
        self.train_data = train_data
        self.evaluate_fn = evaluate
        self.callbacks = list(callbacks)
        self.batches_per_epoch = _length_or_none(train_data)
        self.state = TrainState(total_steps=self._total_steps())
        options = self.config.optimizer
        self.optimizer = torch.optim.AdamW(
            _parameter_groups(model, options.weight_decay),
            lr=options.learning_rate,
            betas=(options.beta1, options.beta2),
            eps=options.eps,
        )
        warmup = options.warmup_steps or int(options.warmup_ratio * self.state.total_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            WarmupDecay(warmup, self.state.total_steps, options.schedule, options.min_lr_ratio),
        )
        self.autocast_dtype = _autocast_dtype(self.config.precision, self.device)
        self.history: list[dict[str, float]] = []
        self.evaluations: list[dict[str, float]] = []
        self._epoch_start_rng: dict[str, Any] | None = None
        self._last_checkpoint: Path | None = None

    def _total_steps(self) -> int:
        if self.config.max_steps is not None:
            return self.config.max_steps
        if self.batches_per_epoch is None:
            raise ConfigError(
                "the training data has no length, so the number of steps is unknown; set max_steps"
            )
        if self.batches_per_epoch == 0:
            raise ConfigError("the training data is empty")
        per_epoch = math.ceil(self.batches_per_epoch / self.config.gradient_accumulation_steps)
        return per_epoch * self.config.epochs

    # ----------------------------------------------------------------------------------------
    def train(self, resume_from: str | os.PathLike[str] | None = None) -> TrainResult:
        """Train to the end (or until stopped). ``resume_from``: a checkpoint folder, or
        "latest" for the newest one in ``checkpoint_dir``."""
        from septet.common.seeding import seed_everything

        skip = 0
        if resume_from is not None:
            self._load_checkpoint(self._resolve_checkpoint(resume_from))
            skip = self.state.batches_in_epoch
            _set_rng_state(self._resume_rng)
        else:
            seed_everything(self.config.seed, deterministic=False)
        state = self.state
        self.model.train()
        self._running: dict[str, float] = {}
        self._running_count = 0
        with progress_bar(state.total_steps, "training") as bar:
            bar.advance(state.step)
            while state.step < state.total_steps and not state.should_stop:
                batches = self._epoch_iterator(skip)
                if skip:
                    _set_rng_state(self._resume_rng)  # back to the moment of the checkpoint
                used_before, skip = state.batches_in_epoch, 0
                pending = 0
                window = self._window_size(state.batches_in_epoch)
                for batch in batches:
                    loss, metrics = self._forward(batch)
                    (loss / window).backward()
                    pending += 1
                    state.batches_in_epoch += 1
                    self._accumulate_logs(loss, metrics)
                    if pending == window:
                        pending = 0
                        window = self._window_size(state.batches_in_epoch)
                        self._step(bar)
                        if state.should_stop or state.step >= state.total_steps:
                            break
                else:
                    if pending:  # a part-filled last window of the epoch still makes a step
                        self._step(bar)
                    if state.batches_in_epoch == 0 and used_before == 0:
                        raise ConfigError("the training data yielded no batches")
                    state.epoch += 1
                    state.batches_in_epoch = 0
        if self.evaluate_fn is not None and (
            not self.evaluations or self.evaluations[-1]["step"] != state.step
        ):
            self._evaluate()
        if self.config.checkpoint_dir is not None and (
            self._last_checkpoint is None or _checkpoint_step(self._last_checkpoint) != state.step
        ):
            self.save_checkpoint()
        for callback in self.callbacks:
            callback.on_train_end(state)
        return TrainResult(
            state=state,
            history=self.history,
            evaluations=self.evaluations,
            last_checkpoint=self._last_checkpoint,
            best_checkpoint=self._best_checkpoint(),
        )

    def _accumulate_logs(self, loss: torch.Tensor, metrics: Mapping[str, float]) -> None:
        self._running["loss"] = self._running.get("loss", 0.0) + float(loss.detach())
        for name, value in metrics.items():
            self._running[name] = self._running.get(name, 0.0) + float(value)
        self._running_count += 1

    def _step(self, bar: Any) -> None:
        """One optimizer update, then logging, callbacks, evaluation and checkpoint."""
        state, config = self.state, self.config
        learning_rate = self.scheduler.get_last_lr()[0]  # the rate this update uses
        self._optimizer_step()
        state.step += 1
        bar.advance()
        logs = {name: total / self._running_count for name, total in self._running.items()}
        logs["learning_rate"] = learning_rate
        self._running, self._running_count = {}, 0
        if state.step % config.log_every == 0 or state.step == state.total_steps:
            self.history.append({"step": state.step, **logs})
            bar.describe(f"training loss {logs['loss']:.4f}")
        for callback in self.callbacks:
            callback.on_step_end(state, logs)
        if (
            self.evaluate_fn is not None
            and config.eval_every
            and state.step % config.eval_every == 0
        ):
            self._evaluate()
        if (
            config.checkpoint_dir is not None
            and config.checkpoint_every
            and state.step % config.checkpoint_every == 0
        ):
            self.save_checkpoint()

    def _window_size(self, batches_done: int) -> int:
        """Micro-batches in the accumulation window starting after ``batches_done``: the loss is
        divided by it, so a short last window of an epoch is not down-weighted."""
        accumulation = self.config.gradient_accumulation_steps
        if self.batches_per_epoch is None:
            return accumulation
        return max(1, min(accumulation, self.batches_per_epoch - batches_done))

    def _forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        import torch

        batch = move_to_device(batch, self.device)
        context = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with context:
            result = self.compute_loss(self.model, batch)
        metrics: dict[str, float] = {}
        if isinstance(result, tuple):
            result, metrics = result
        if not isinstance(result, torch.Tensor) or result.numel() != 1:
            raise ConfigError("compute_loss must return a scalar loss tensor (or (loss, metrics))")
        if not torch.isfinite(result.detach()):
            raise TrainingDivergedError(
                f"the loss became {float(result.detach())} at step {self.state.step + 1}; "
                "lower the learning rate or check the data"
            )
        return result.float(), dict(metrics)

    def _optimizer_step(self) -> None:
        import torch

        max_norm = self.config.optimizer.max_grad_norm
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _evaluate(self) -> dict[str, float]:
        import torch

        assert self.evaluate_fn is not None
        state, config = self.state, self.config
        # Evaluation must not disturb training's random streams (a resumed run may evaluate
        # at different points), so it runs on a saved-and-restored RNG state.
        rng = _get_rng_state()
        self.model.eval()
        try:
            with torch.no_grad():
                metrics = {k: float(v) for k, v in dict(self.evaluate_fn(self.model)).items()}
        finally:
            self.model.train()
            _set_rng_state(rng)
        self.evaluations.append({"step": state.step, **metrics})
        improved = False
        if config.best_metric is not None:
            if config.best_metric not in metrics:
                raise ConfigError(
                    f"best_metric {config.best_metric!r} is not among the evaluation's metrics "
                    f"({', '.join(sorted(metrics)) or 'none'})"
                )
            value = metrics[config.best_metric]
            best = state.best_metric
            improved = best is None or (value > best if config.greater_is_better else value < best)
            if improved:
                state.best_metric, state.best_step = value, state.step
                state.evaluations_without_improvement = 0
            else:
                state.evaluations_without_improvement += 1
                patience = config.early_stopping_patience
                if patience is not None and state.evaluations_without_improvement >= patience:
                    state.should_stop = True
        for callback in self.callbacks:
            callback.on_evaluate(state, metrics)
        if improved and config.checkpoint_dir is not None:
            path = self.save_checkpoint()
            atomic_write_json(
                Path(config.checkpoint_dir) / BEST_FILE,
                {"checkpoint": path.name, "step": state.step, config.best_metric: value},
            )
        return metrics

    # ----------------------------------------------------------------------------------------
    # Data order
    # ----------------------------------------------------------------------------------------
    def _epoch_iterator(self, skip: int) -> Iterator[Any]:
        """A fresh pass over the data. The RNG state at its start is remembered (and saved in
        checkpoints) so that a resumed run draws the same shuffle, then skips what was used."""
        if skip == 0:
            self._epoch_start_rng = _get_rng_state(self.train_data)
        elif self._epoch_start_rng is None:
            raise CheckpointError("the checkpoint lacks the random state of its epoch's start")
        else:
            _set_rng_state(self._epoch_start_rng, self.train_data)
        iterator = iter(self.train_data)
        for _ in range(skip):
            try:
                next(iterator)
            except StopIteration:
                raise CheckpointError(
                    f"the training data has fewer batches than the checkpoint had used ({skip}); "
                    "resume with the same data and batch size"
                ) from None
        return iterator

    # ----------------------------------------------------------------------------------------
    # Checkpoints
    # ----------------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        """Write ``step-NNNNNNNN/`` under checkpoint_dir atomically; prune old ones."""
        if self.config.checkpoint_dir is None:
            raise ConfigError("save_checkpoint needs checkpoint_dir in the training config")
        root = Path(self.config.checkpoint_dir)
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"{CHECKPOINT_PREFIX}{self.state.step:08d}"
        temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=root))
        try:
            training_state = {
                "state": dataclasses.asdict(self.state),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": _get_rng_state(),
                "epoch_start_rng": self._epoch_start_rng,
                "history": self.history,
                "evaluations": self.evaluations,
                "config": dataclasses.asdict(self.config),
            }
            _save_synced(self.model.state_dict(), temp / MODEL_FILE)
            _save_synced(training_state, temp / STATE_FILE)
            fsync_directory(temp)
            if final.exists():  # a rerun of the same step replaces the old folder
                shutil.rmtree(final)
            os.replace(temp, final)
            fsync_directory(root)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        self._last_checkpoint = final
        self._prune_checkpoints(root)
        for callback in self.callbacks:
            callback.on_checkpoint(self.state, final)
        return final

    def _prune_checkpoints(self, root: Path) -> None:
        keep = set(list_checkpoints(root)[-self.config.keep_checkpoints :])
        best = self._best_checkpoint()
        if best is not None:
            keep.add(best)
        for path in list_checkpoints(root):
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def _best_checkpoint(self) -> Path | None:
        if self.config.checkpoint_dir is None:
            return None
        root = Path(self.config.checkpoint_dir)
        info_path = root / BEST_FILE
        if not info_path.is_file():
            return None
        path = root / json.loads(info_path.read_text())["checkpoint"]
        return path if path.is_dir() else None

    def _resolve_checkpoint(self, resume_from: str | os.PathLike[str]) -> Path:
        if str(resume_from) == "latest":
            if self.config.checkpoint_dir is None:
                raise ConfigError("resume_from='latest' needs checkpoint_dir")
            found = list_checkpoints(Path(self.config.checkpoint_dir))
            if not found:
                raise CheckpointError(f"no checkpoints in {self.config.checkpoint_dir} to resume")
            return found[-1]
        path = Path(resume_from)
        if not (path / STATE_FILE).is_file():
            raise CheckpointError(f"{path} is not a training checkpoint (no {STATE_FILE})")
        return path

    def _load_checkpoint(self, path: Path) -> None:
        import torch

        try:
            model_state = torch.load(path / MODEL_FILE, map_location=self.device, weights_only=True)
            saved = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read the checkpoint {path}: {exc}") from exc
        try:
            self.model.load_state_dict(model_state)
        except RuntimeError as exc:
            raise CheckpointError(f"the checkpoint {path} does not fit this model: {exc}") from exc
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.state = TrainState(**saved["state"])
        self.state.should_stop = False
        self.state.total_steps = self._total_steps()
        self.history = list(saved["history"])
        self.evaluations = list(saved["evaluations"])
        self._epoch_start_rng = saved["epoch_start_rng"]
        self._resume_rng = saved["rng"]
        self._last_checkpoint = path


# --------------------------------------------------------------------------------------------
def list_checkpoints(root: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoint folders under ``root``, oldest step first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / STATE_FILE).is_file()
    ]
    return sorted(found, key=_checkpoint_step)


def load_model_weights(model: torch.nn.Module, checkpoint: str | os.PathLike[str]) -> None:
    """Put a training checkpoint's weights into ``model`` (e.g. the best one after training)."""
    import torch

    path = Path(checkpoint) / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(f"{checkpoint} is not a training checkpoint (no {MODEL_FILE})")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def move_to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor (inside dicts, lists and tuples) on ``device``."""
    if hasattr(batch, "to") and hasattr(batch, "dtype"):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {key: move_to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple):
        return tuple(move_to_device(value, device) for value in batch)
    if isinstance(batch, list):
        return [move_to_device(value, device) for value in batch]
    return batch


def _checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.removeprefix(CHECKPOINT_PREFIX))
    except ValueError:
        return -1


def _save_synced(obj: Any, path: Path) -> None:
    import torch

    with open(path, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())


def _length_or_none(data: Iterable[Any]) -> int | None:
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases and normalisation scales (1-D) are not decayed."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    if not decay and not no_decay:
        raise ConfigError("the model has no trainable parameters")
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    import torch

    if precision == "fp32":
        return None
    supported = (
        torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if device.type == "cuda"
        else device.type == "cpu"
    )
    if precision == "bf16":
        if not supported:
            raise ConfigError(f"bf16 autocast is not supported on {device}; use precision='fp32'")
        return torch.bfloat16
    # auto: bf16 where it is fast (CUDA); CPU bf16 is supported but rarely faster than fp32.
    return torch.bfloat16 if device.type == "cuda" and supported else None


def _get_rng_state(data: Any = None) -> dict[str, Any]:
    import numpy as np
    import torch

    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    generator = getattr(data, "generator", None)
    if isinstance(generator, torch.Generator):
        state["loader"] = generator.get_state()
    return state


def _set_rng_state(state: dict[str, Any], data: Any = None) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    saved = state["numpy"]
    np.random.set_state(
        (
            saved["kind"],
            saved["keys"].numpy().astype(np.uint32),
            saved["position"],
            saved["has_gauss"],
            saved["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    generator = getattr(data, "generator", None)
    if "loader" in state and isinstance(generator, torch.Generator):
        generator.set_state(state["loader"])
