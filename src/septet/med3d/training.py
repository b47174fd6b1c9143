"""Training segmentation ResNets on volumes: fine-tuning (MedicalNet's transfer learning) and,
with several datasets, Med3D's multi-head pretraining. One loop serves both.

Why a loop of its own rather than a generic one: every step draws its patches from a
generator fixed by (seed, epoch, step), and a checkpoint stores (epoch, step) together with
the optimizer and scheduler. So a run that resumes from a checkpoint continues the same
epoch at the same step, draws the very patches the uninterrupted run would have drawn, and
ends with the same weights (bit for bit on CPU).

Transfer learning, as in MedicalNet: the encoder's parameters learn at ``lr`` and the new
layers at ``lr × head_lr_multiplier`` (only when the encoder is pretrained); for the first
``freeze_encoder_epochs`` epochs the encoder is frozen (no gradients, batch-norm statistics
fixed) so the random head cannot wreck the pretrained features.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from septet.common.device import choose_device
from septet.common.progress import progress_bar
from septet.errors import CheckpointError, ConfigError, NotFoundError
from septet.med3d.config import TrainConfig
from septet.med3d.resnet import ResNet3d, is_encoder_key
from septet.med3d.transforms import (
    Compose,
    RandFlipd,
    RandIntensityJitterd,
    Sample,
    augmentation,
    preprocessing,
    rng_for,
)

log = logging.getLogger(__name__)

STATE_NAME = "training_state.pt"


@dataclass
class SegmentationTask:
    """One dataset to train on: preprocessed samples (image + label) and its class count."""

    name: str
    samples: list[Sample]
    num_classes: int

    def __post_init__(self) -> None:
        if not self.samples:
            raise ConfigError(f"dataset {self.name!r} has no samples")
        for sample in self.samples:
            if sample.get("label") is None:
                raise ConfigError(f"dataset {self.name!r} has a sample without a label")
            top = int(sample["label"].max())
            if top >= self.num_classes or int(sample["label"].min()) < 0:
                raise ConfigError(
                    f"dataset {self.name!r}: a label holds class {top} but num_classes is "
                    f"{self.num_classes}; labels must lie in 0…num_classes-1"
                )


@dataclass
class ClassificationTask:
    """Whole volumes with one class each (``sample["class"]``): the image is resized to the
    patch size, as MedicalNet resizes its inputs, then flipped and jittered."""

    name: str
    samples: list[Sample]
    num_classes: int

    def __post_init__(self) -> None:
        if not self.samples:
            raise ConfigError(f"dataset {self.name!r} has no samples")
        for sample in self.samples:
            value = sample.get("class")
            if value is None or not 0 <= int(value) < self.num_classes:
                raise ConfigError(
                    f"dataset {self.name!r}: every sample needs a 'class' in 0…"
                    f"{self.num_classes - 1}, got {value!r}"
                )


def resize_image(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Resize (C, X, Y, Z) to (C, *size) with trilinear interpolation."""
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    resized = F.interpolate(tensor, size=tuple(size), mode="trilinear", align_corners=False)
    return resized[0].numpy()


@dataclass
class TrainResult:
    """What ``fit`` did: the last position reached and the loss (and validation) history."""

    epoch: int
    step_in_epoch: int
    global_step: int
    history: list[dict[str, Any]] = field(default_factory=list)


def prepare_samples(
    records: Sequence[dict[str, Any]], config: TrainConfig, *, with_label: bool = True
) -> list[Sample]:
    """Load and preprocess each record (``{"image": path, "label": path}``) once."""
    pipeline = preprocessing(config.spacing, ct_window=config.ct_window, with_label=with_label)
    return [pipeline(dict(record)) for record in records]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 when asked for, or on ``auto`` where the device runs it fast (CUDA with bf16
    support); None for full fp32. CPU bf16 works but is slower than fp32 on most CPUs."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy plus soft Dice over the foreground classes (batch-wise). Logits on a
    coarser grid than the label (a model with ``full_resolution=False`` predicts on
    MedicalNet's D/4 grid) are resized to the label's grid first: downsampling the label
    instead, as MedicalNet did, erases lesions smaller than a cell."""
    logits = logits.float()
    if tuple(logits.shape[2:]) != tuple(target.shape[1:]):
        logits = F.interpolate(
            logits, size=tuple(target.shape[1:]), mode="trilinear", align_corners=False
        )
    ce = F.cross_entropy(logits, target)
    num_classes = logits.shape[1]
    if num_classes < 2:
        return ce
    probs = logits.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(target, num_classes).permute(0, 4, 1, 2, 3)[:, 1:].float()
    dims = (0, 2, 3, 4)
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * intersection + 1e-5) / (denominator + 1e-5)
    dice_loss = (1 - dice[present]).mean() if present.any() else probs.mean() * 0
    return ce + dice_loss


class Trainer:
    """Trains ``model`` on one task (fine-tuning) or several (multi-head pretraining, one
    task per step in turn)."""

    def __init__(
        self,
        model: ResNet3d,
        tasks: Sequence[SegmentationTask],
        config: TrainConfig,
        *,
        pretrained_encoder: bool | None = None,
        validation: Sequence[Sample] = (),
    ):
        if not tasks:
            raise ConfigError("training needs at least one dataset")
        self.config = config
        self.device = choose_device(config.device)
        self.model = model.to(self.device)
        # What inference needs to repeat training (above all the patch size, the right
        # sliding-window size), kept on the model as load_model does for a saved one.
        model.extra_config = {**(getattr(model, "extra_config", None) or {}), **model_extra(config)}
        self.tasks = list(tasks)
        self.validation = list(validation)
        self.multi_head = hasattr(model, "heads")
        for task in self.tasks:
            expected = (
                model.head_classes.get(task.name) if self.multi_head else (model.config.num_classes)
            )
            if expected is None:
                raise ConfigError(f"the model has no head for dataset {task.name!r}")
            wanted = "classification" if isinstance(task, ClassificationTask) else "segmentation"
            if not self.multi_head and model.config.task != wanted:
                raise ConfigError(
                    f"dataset {task.name!r} is a {wanted} task but the model has a "
                    f"{model.config.task} head; create it with task={wanted!r}"
                )
            if expected != task.num_classes:
                raise ConfigError(
                    f"dataset {task.name!r} has {task.num_classes} classes but its head "
                    f"predicts {expected}"
                )
        if pretrained_encoder is None:
            pretrained_encoder = config.pretrained is not None
        self.pretrained_encoder = pretrained_encoder
        self.classify_augment = Compose(
            ([RandFlipd(keys="image")] if config.flip else [])
            + ([RandIntensityJitterd(config.jitter, config.jitter)] if config.jitter > 0 else [])
        )
        self.augment = augmentation(
            config.patch_size,
            pos_fraction=config.pos_fraction,
            flip=config.flip,
            rotate_degrees=config.rotate_degrees,
            jitter=config.jitter,
        )
        self.optimizer = self._make_optimizer()
        total = config.epochs * config.steps_per_epoch
        if config.schedule == "cosine":
            lam = lambda step: 0.5 * (1 + np.cos(np.pi * min(step, total) / total))  # noqa: E731
        else:
            lam = lambda step: 1.0  # noqa: E731
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lam)
        self.amp_dtype = autocast_dtype(config.precision, self.device)
        self.epoch = 0
        self.step_in_epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.epoch_losses: list[float] = []  # of the epoch in progress

    def _end_epoch(self) -> None:
        """Record the finished epoch (mean loss, validation Dice) and move to the next."""
        record: dict[str, Any] = {"epoch": self.epoch, "loss": float(np.mean(self.epoch_losses))}
        if self.validation and not self.multi_head and self.model.config.task == "segmentation":
            from septet.med3d.inference import evaluate_samples

            scores = evaluate_samples(self.model, self.validation, self.config, hd95=False)
            record["val_dice"] = float(np.nanmean([s["dice_mean"] for s in scores]))
            self.model.train()
        self.history.append(record)
        log.info("epoch %d: %s", self.epoch, record)
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_losses = []

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        encoder, head = [], []
        for name, parameter in self.model.named_parameters():
            (encoder if is_encoder_key(name) else head).append(parameter)
        multiplier = c.head_lr_multiplier if self.pretrained_encoder else 1.0
        groups = [
            {"params": encoder, "lr": c.lr, "name": "encoder"},
            {"params": head, "lr": c.lr * multiplier, "name": "head"},
        ]
        # The fused kernels are several times faster than the per-tensor loop on CPU too.
        fused = self.device.type in ("cpu", "cuda")
        if c.optimizer == "sgd":
            return torch.optim.SGD(
                groups, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, fused=fused
            )
        return torch.optim.AdamW(groups, lr=c.lr, weight_decay=c.weight_decay, fused=fused)

    def set_encoder_frozen(self, frozen: bool) -> None:
        """Stop (or restart) the encoder learning, batch-norm statistics included."""
        for name, parameter in self.model.named_parameters():
            if is_encoder_key(name):
                parameter.requires_grad_(not frozen)
        for module in self.model.encoder_modules():
            module.train(not frozen and self.model.training)

    def batch(self, task: SegmentationTask | ClassificationTask, rng: np.random.Generator):
        """``batch_size`` augmented patches (or resized volumes) of ``task`` drawn with ``rng``."""
        images, labels = [], []
        for _ in range(self.config.batch_size):
            sample = task.samples[int(rng.integers(len(task.samples)))]
            if isinstance(task, ClassificationTask):
                whole = {"image": resize_image(sample["image"], self.config.patch_size)}
                images.append(self.classify_augment(whole, rng)["image"])
                labels.append(np.int64(sample["class"]))
                continue
            patch = self.augment(sample, rng)
            images.append(patch["image"])
            labels.append(patch["label"])
        x = torch.from_numpy(np.stack(images)).float().to(self.device)
        y = torch.from_numpy(np.stack(labels)).long().to(self.device)
        return x, y

    def forward(self, x: torch.Tensor, task: SegmentationTask) -> torch.Tensor:
        context = (
            torch.autocast(self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else nullcontext()
        )
        with context:
            return self.model(x, task.name) if self.multi_head else self.model(x)

    def fit(
        self, *, resume: str | os.PathLike[str] | None = None, stop_after_steps: int | None = None
    ) -> TrainResult:
        """Train to ``epochs`` (from a checkpoint's position when ``resume`` is given);
        ``stop_after_steps`` stops early, as an interruption would."""
        c = self.config
        if resume is not None:
            self.load_checkpoint(resume)
        total = c.epochs * c.steps_per_epoch
        done_at_start = self.global_step
        with progress_bar(total, "med3d train") as bar:
            bar.advance(self.global_step)
            while self.epoch < c.epochs:
                self.model.train()
                self.set_encoder_frozen(self.epoch < c.freeze_encoder_epochs)
                stopping = epoch_done = False
                while not (stopping or epoch_done):
                    task = self.tasks[self.global_step % len(self.tasks)]
                    x, y = self.batch(task, rng_for(c.seed, self.epoch, self.step_in_epoch))
                    output = self.forward(x, task)
                    loss = (
                        F.cross_entropy(output.float(), y)
                        if isinstance(task, ClassificationTask)
                        else segmentation_loss(output, y)
                    )
                    if not torch.isfinite(loss):
                        raise ConfigError(
                            f"the loss became {loss.item()} at epoch {self.epoch} step "
                            f"{self.step_in_epoch}; lower lr (now {c.lr})"
                        )
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    self.optimizer.step()
                    self.scheduler.step()
                    self.epoch_losses.append(float(loss.detach()))
                    self.step_in_epoch += 1
                    self.global_step += 1
                    bar.advance()
                    bar.describe(f"med3d epoch {self.epoch} loss {self.epoch_losses[-1]:.3f}")
                    epoch_done = self.step_in_epoch == c.steps_per_epoch
                    if epoch_done:
                        self._end_epoch()
                    if (
                        c.checkpoint_dir
                        and c.checkpoint_every
                        and (self.global_step % c.checkpoint_every == 0)
                    ) or (c.checkpoint_dir and self.step_in_epoch == 0):
                        self.save_checkpoint(c.checkpoint_dir)
                    stopping = stop_after_steps is not None and (
                        self.global_step - done_at_start >= stop_after_steps
                    )
                if stopping:
                    return self.result()
        self.model.eval()
        return self.result()

    def result(self) -> TrainResult:
        return TrainResult(self.epoch, self.step_in_epoch, self.global_step, list(self.history))

    def save_checkpoint(self, directory: str | os.PathLike[str]) -> Path:
        """Model (safetensors + config.json) and the training state, swapped in atomically."""
        from septet.common.atomic import atomic_directory
        from septet.med3d.weights import save_model

        with atomic_directory(directory) as staging:
            save_model(self.model, staging / "model", **model_extra(self.config))
            for name in os.listdir(staging / "model"):
                os.replace(staging / "model" / name, staging / name)
            (staging / "model").rmdir()
            state = {
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "history": self.history,
                "epoch_losses": self.epoch_losses,
                "train_config": self.config.to_dict(),
            }
            with open(staging / STATE_NAME, "wb") as handle:
                torch.save(state, handle)
                handle.flush()
                os.fsync(handle.fileno())
        return Path(directory)

    def load_checkpoint(self, directory: str | os.PathLike[str]) -> None:
        """Restore weights, optimizer, scheduler and position from ``save_checkpoint``."""
        from septet.med3d.weights import read_state_dict

        path = Path(directory) / STATE_NAME
        if not path.exists():
            raise NotFoundError(
                f"{directory} has no {STATE_NAME}; resume needs a checkpoint written during "
                "training (checkpoint_dir)"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.model.load_state_dict(read_state_dict(directory), strict=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise CheckpointError(
                f"cannot resume from {directory}: it does not fit this model and optimizer "
                f"({error})"
            ) from error
        self.epoch = int(state["epoch"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state.get("history", []))
        self.epoch_losses = list(state.get("epoch_losses", []))


def model_extra(config: TrainConfig) -> dict[str, Any]:
    """What ``predict`` needs beside the weights: the preprocessing and window size."""
    return {
        "preprocessing": {
            "spacing": list(config.spacing) if config.spacing else None,
            "ct_window": list(config.ct_window) if config.ct_window else None,
        },
        "patch_size": list(config.patch_size),
        "overlap": config.overlap,
        "blend": config.blend,
    }


def train(
    records: Sequence[dict[str, Any]],
    config: TrainConfig,
    *,
    validation: Sequence[dict[str, Any]] = (),
    output: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    samples: Sequence[Sample] | None = None,
) -> tuple[ResNet3d, TrainResult]:
    """Fine-tune (or train from scratch) ``config.model`` on labelled records; save the
    model (safetensors + config.json) to ``output`` if given."""
    from septet.common.seeding import seed_everything
    from septet.med3d.registry import create_model
    from septet.med3d.weights import save_model

    seed_everything(config.seed)
    model = create_model(
        config.model,
        task="segmentation",
        num_classes=config.num_classes,
        in_channels=config.in_channels,
        pretrained=config.pretrained,
    )
    if model.load_report is not None:
        log.info("%s", model.load_report.summary())
    train_samples = list(samples) if samples is not None else prepare_samples(records, config)
    val_samples = prepare_samples(validation, config) if validation else []
    task = SegmentationTask("train", train_samples, config.num_classes)
    trainer = Trainer(model, [task], config, validation=val_samples)
    result = trainer.fit(resume=resume)
    if output is not None:
        save_model(model, output, **model_extra(config))
    return model, result


def train_classifier(
    records: Sequence[dict[str, Any]],
    config: TrainConfig,
    *,
    output: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    samples: Sequence[Sample] | None = None,
) -> tuple[ResNet3d, TrainResult]:
    """Fine-tune (or train from scratch) a classification ResNet on records with a
    ``"class"`` (MedicalNet list files with an integer second field); whole volumes are
    resized to ``config.patch_size``."""
    from septet.common.seeding import seed_everything
    from septet.med3d.registry import create_model
    from septet.med3d.weights import save_model

    seed_everything(config.seed)
    model = create_model(
        config.model,
        task="classification",
        num_classes=config.num_classes,
        in_channels=config.in_channels,
        pretrained=config.pretrained,
    )
    if samples is None:
        samples = prepare_samples(
            [{k: v for k, v in r.items() if k != "label"} for r in records],
            config,
            with_label=False,
        )
    task = ClassificationTask("train", list(samples), config.num_classes)
    trainer = Trainer(model, [task], config)
    result = trainer.fit(resume=resume)
    if output is not None:
        save_model(model, output, **model_extra(config))
    return model, result


@torch.no_grad()
def classify(model: ResNet3d, image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Class probabilities for one preprocessed image (C, X, Y, Z), resized to ``size``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = torch.from_numpy(resize_image(image, size))[None].to(device)
        return model(x).float().softmax(dim=1)[0].cpu().numpy()
    finally:
        model.train(was_training)
