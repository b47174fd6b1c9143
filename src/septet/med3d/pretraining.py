"""Med3D's recipe, with the code MedicalNet's users asked for: pretrain one shared encoder on
several segmentation datasets at once, one head per dataset, then hand the encoder to
``create_model(..., pretrained=folder)`` for fine-tuning."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from septet.common.seeding import seed_everything
from septet.errors import ConfigError
from septet.med3d.config import TrainConfig
from septet.med3d.resnet import DEPTHS, MultiHeadResNet3d, ResNet3dConfig
from septet.med3d.training import SegmentationTask, Trainer, TrainResult, prepare_samples
from septet.med3d.weights import save_model


def model_depth(name: str) -> int:
    """The depth in a model name such as 'resnet50'."""
    digits = "".join(c for c in name if c.isdigit())
    if not digits or int(digits) not in DEPTHS:
        raise ConfigError(
            f"model {name!r} is not a MedicalNet ResNet; use one of "
            f"{', '.join(f'resnet{d}' for d in DEPTHS)}"
        )
    return int(digits)


def pretrain(
    datasets: Mapping[str, tuple[Sequence[dict[str, Any]], int]],
    config: TrainConfig,
    *,
    output: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    samples: Mapping[str, Sequence[dict[str, Any]]] | None = None,
) -> tuple[MultiHeadResNet3d, TrainResult]:
    """Train a shared encoder with one head per dataset (``{name: (records, num_classes)}``,
    or already preprocessed ``samples``); save the model to ``output`` if given."""
    if not datasets:
        raise ConfigError("pretraining needs at least one dataset")
    seed_everything(config.seed)
    model_config = ResNet3dConfig(
        depth=model_depth(config.model), task="features", in_channels=config.in_channels
    )
    model = MultiHeadResNet3d(model_config, {name: n for name, (_, n) in datasets.items()})
    tasks = [
        SegmentationTask(
            name,
            list(samples[name]) if samples is not None else prepare_samples(records, config),
            num_classes,
        )
        for name, (records, num_classes) in datasets.items()
    ]
    trainer = Trainer(model, tasks, config, pretrained_encoder=False)
    result = trainer.fit(resume=resume)
    if output is not None:
        from septet.med3d.training import model_extra

        save_model(model, Path(output), **model_extra(config))
    return model, result
