"""Training configuration: one dataclass, unknown keys are errors that name the key."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from septet.common.config import dataclass_from_dict
from septet.errors import ConfigError

PRECISIONS = ("auto", "bf16", "fp32")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """How to train (fine-tune or pretrain) a segmentation ResNet on volumes."""

    model: str = "resnet10"
    num_classes: int = 2
    in_channels: int = 1
    pretrained: str | None = None  # MedicalNet .pth, MONAI .pt, or a septet model folder
    patch_size: tuple[int, int, int] = (32, 32, 32)
    batch_size: int = 2
    epochs: int = 10
    steps_per_epoch: int = 20
    optimizer: str = "adamw"
    lr: float = 1e-3
    head_lr_multiplier: float = 10.0  # new layers learn faster than pretrained ones
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    schedule: str = "constant"
    freeze_encoder_epochs: int = 0  # train only the head for this many epochs first
    precision: str = "auto"  # bf16 autocast where the device supports it
    seed: int = 0
    device: str | None = None
    # preprocessing, saved with the model so `predict` repeats it
    spacing: tuple[float, float, float] | None = None
    ct_window: tuple[float, float] | None = None
    # augmentation
    pos_fraction: float = 0.67
    flip: bool = True
    rotate_degrees: float = 10.0
    jitter: float = 0.1
    # inference and checkpoints
    overlap: float = 0.5
    blend: str = "gaussian"
    largest_component: bool = False  # keep each class's largest connected component only
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0  # steps between checkpoints; 0: at the end of each epoch

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(s) for s in self.patch_size)
        if len(self.patch_size) != 3 or min(self.patch_size) < 8:
            raise ConfigError(f"patch_size {self.patch_size} must be 3 sizes of at least 8 voxels")
        if self.spacing is not None:
            self.spacing = tuple(float(s) for s in self.spacing)
        if self.ct_window is not None:
            self.ct_window = tuple(float(s) for s in self.ct_window)
        for name, allowed in (
            ("precision", PRECISIONS),
            ("optimizer", OPTIMIZERS),
            ("schedule", SCHEDULES),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"{name} {getattr(self, name)!r} is unknown; use one of {', '.join(allowed)}"
                )
        for name in ("batch_size", "epochs", "steps_per_epoch", "num_classes", "in_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.head_lr_multiplier <= 0:
            raise ConfigError("lr and head_lr_multiplier must be positive")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a dict (e.g. a JSON file); an unknown key is an error naming it."""
        return dataclass_from_dict(cls, values, "training")

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
