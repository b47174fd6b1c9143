"""Whole-volume prediction and evaluation: preprocess as in training, sliding-window
inference, then undo the geometry (resampling, orientation) so the mask lies on the input's
own grid, and score it there in millimetres."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from septet.errors import ConfigError
from septet.med3d.config import TrainConfig
from septet.med3d.metrics import dice_per_class, hausdorff95_per_class
from septet.med3d.postprocessing import keep_largest_component
from septet.med3d.resnet import ResNet3d
from septet.med3d.sliding_window import sliding_window_inference
from septet.med3d.transforms import LoadVolumed, Sample, preprocessing
from septet.med3d.volume_io import from_canonical, resample_to_spacing, write_nifti

log = logging.getLogger(__name__)


def training_patch_size(model: ResNet3d) -> tuple[int, int, int] | None:
    """The patch size ``model`` was trained on (recorded by the Trainer and saved with the
    model), or None when unknown."""
    size = (getattr(model, "extra_config", None) or {}).get("patch_size")
    return tuple(int(s) for s in size) if size else None


def predict_probabilities(
    model: ResNet3d,
    image: np.ndarray,
    *,
    roi_size: Sequence[int] | None = None,
    overlap: float = 0.5,
    blend: str = "gaussian",
    dataset: str | None = None,
) -> np.ndarray:
    """Class probabilities (K, X, Y, Z) for a preprocessed image (C, X, Y, Z), by sliding
    windows of ``roi_size`` (default: the patch size the model was trained on).

    Windows should match the training patch: MedicalNet's layer3/layer4 are dilated (2, 4)
    on a 1/8 grid, so on a small training patch they see mostly zero padding, and the same
    network on a larger window sees real context it never learnt from; on the med3d
    benchmark, 64³ windows after 24³ training dropped the mean lesion probability on
    training volumes from 0.46 to 0.002."""
    trained = training_patch_size(model)
    if roi_size is None:
        if trained is None:
            raise ConfigError(
                "roi_size is needed: this model does not record the patch size it was "
                "trained on (pass the training patch size)"
            )
        roi_size = trained
    elif trained is not None and tuple(int(s) for s in roi_size) != trained:
        log.warning(
            "sliding windows of %s differ from the %s patches the model was trained on; "
            "its dilated layers then see context they never learnt from and predictions "
            "can collapse: use the training patch size",
            tuple(roi_size),
            trained,
        )
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    multi_head = hasattr(model, "heads")

    def predictor(batch: torch.Tensor) -> torch.Tensor:
        logits = model(batch, dataset) if multi_head else model(batch)
        return logits.float().softmax(dim=1)

    try:
        volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].to(device)
        probs = sliding_window_inference(volume, roi_size, predictor, overlap=overlap, blend=blend)
    finally:
        model.train(was_training)
    return probs[0].cpu().numpy()


def restore_original_grid(probabilities: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Labels on the grid the volume was read in: probabilities resampled back (linear, then
    argmax, which keeps boundaries smoother than resampling labels) and re-oriented."""
    probs = np.moveaxis(probabilities, 0, -1)
    shape = meta.get("pre_spacing_shape")
    if shape is not None and tuple(shape) != probs.shape[:3]:
        probs, _ = resample_to_spacing(probs, np.eye(4), (1, 1, 1), order=1, shape=tuple(shape))
    label = probs.argmax(axis=-1).astype(np.uint8)
    if meta.get("ornt") is not None:
        label = from_canonical(label, meta["ornt"])
    return label


def predict_sample(model: ResNet3d, sample: Sample, config: TrainConfig, **kwargs: Any):
    """(labels in the preprocessed grid, labels on the original grid) for one sample."""
    probs = predict_probabilities(
        model,
        sample["image"],
        roi_size=config.patch_size,
        overlap=config.overlap,
        blend=config.blend,
        **kwargs,
    )
    labels = probs.argmax(axis=0).astype(np.uint8)
    original = restore_original_grid(probs, sample["meta"])
    if config.largest_component:
        labels, original = keep_largest_component(labels), keep_largest_component(original)
    return labels, original


def evaluate_samples(
    model: ResNet3d,
    samples: Sequence[Sample],
    config: TrainConfig,
    *,
    hd95: bool = True,
    original: Sequence[np.ndarray] | None = None,
    dataset: str | None = None,
) -> list[dict[str, Any]]:
    """Dice (and HD95, mm) per class for each sample; on the original grid against
    ``original`` labels when given, else on the preprocessed grid."""
    num_classes = (
        model.head_classes[dataset] if hasattr(model, "heads") else model.config.num_classes
    )
    scores = []
    for i, sample in enumerate(samples):
        kwargs = {"dataset": dataset} if dataset is not None else {}
        probs = predict_probabilities(
            model,
            sample["image"],
            roi_size=config.patch_size,
            overlap=config.overlap,
            blend=config.blend,
            **kwargs,
        )
        if original is not None:
            # Back to the original grid only when scoring there: with many classes and a
            # fine original grid the resampled probabilities are large.
            prediction, target = restore_original_grid(probs, sample["meta"]), original[i]
            affine = sample["meta"]["affine"]
        else:
            prediction, target, affine = probs.argmax(axis=0), sample["label"], sample["affine"]
        if config.largest_component:
            prediction = keep_largest_component(prediction)
        spacing = tuple(float(s) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))
        dice = dice_per_class(prediction, target, num_classes)
        row: dict[str, Any] = {
            "case": sample.get("case") or Path(str(sample["meta"].get("source", i))).name,
            "dice": dice,
            "dice_mean": float(np.nanmean(dice)) if not np.all(np.isnan(dice)) else float("nan"),
        }
        if hd95:
            row["hd95_mm"] = hausdorff95_per_class(prediction, target, num_classes, spacing)
        scores.append(row)
    return scores


def evaluate_records(
    model: ResNet3d, records: Sequence[dict[str, Any]], config: TrainConfig
) -> list[dict[str, Any]]:
    """Score ``model`` on labelled records, each on its own original grid and spacing."""
    pipeline = preprocessing(config.spacing, ct_window=config.ct_window, with_label=False)
    rows = []
    for record in records:
        sample = pipeline({k: v for k, v in record.items() if k != "label"})
        sample["case"] = record.get("case")
        target = LoadVolumed("label")({"label": record["label"]})["label"]
        rows += evaluate_samples(model, [sample], config, original=[target])
    return rows


def predict_file(
    model: ResNet3d,
    image: str | os.PathLike[str] | list[str],
    output: str | os.PathLike[str],
    config: TrainConfig,
) -> Path:
    """Segment a volume file and write the mask as NIfTI with the input's affine (and, for
    NIfTI input, a copy of its header)."""
    pipeline = preprocessing(config.spacing, ct_window=config.ct_window, with_label=False)
    sample = pipeline({"image": image})
    _, label = predict_sample(model, sample, config)
    meta = sample["meta"]
    return write_nifti(label, output, meta["affine"], meta.get("header"))
