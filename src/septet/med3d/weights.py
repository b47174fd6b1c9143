"""Weights in and out: MedicalNet's published checkpoints, MONAI ResNets, and septet's own
folders (``model.safetensors`` + ``config.json``).

Loading is loud (nanoGPT's habit): every key is accounted for in a ``LoadReport``. A checkpoint
that matches nothing, or (by default) one that leaves any encoder weight unset, is refused
with a message that says what the checkpoint looks like instead.

MedicalNet publishes ``{"state_dict": {"module.conv1.weight": ...}}`` (saved from
``nn.DataParallel``); its own CPU path compares keys with the prefix still on and so silently
loads nothing. Here the prefix is removed wherever the file is opened and whatever the device.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from septet.common.atomic import atomic_directory, atomic_write_json
from septet.errors import CheckpointError, NotFoundError
from septet.med3d.resnet import DEPTHS, ResNet3d, ResNet3dConfig, is_encoder_key

if TYPE_CHECKING:
    from torch import nn

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# Wrappers that training frameworks put in front of the model's own names.
WRAPPER_PREFIXES = ("module.", "model.", "net.", "network.", "backbone.", "encoder.", "_orig_mod.")


@dataclass
class LoadReport:
    """What a checkpoint gave a model, key by key."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing_encoder: list[str] = field(default_factory=list)  # encoder keys the file lacks
    missing_head: list[str] = field(default_factory=list)  # new layers, left as initialised
    unexpected: list[str] = field(default_factory=list)  # file keys the model has no place for
    mismatched: list[str] = field(default_factory=list)  # "key: file (..) vs model (..)"
    adapted: list[str] = field(default_factory=list)  # e.g. conv1 spread over more channels

    @property
    def encoder_complete(self) -> bool:
        return not self.missing_encoder

    def summary(self) -> str:
        """One line for logs and the CLI."""
        parts = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        if self.adapted:
            parts.append(f"adapted {', '.join(self.adapted)}")
        if self.missing_encoder:
            parts.append(f"{len(self.missing_encoder)} encoder tensors missing")
        if self.missing_head:
            parts.append(f"{len(self.missing_head)} head tensors new")
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} shape mismatches skipped")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} file tensors unused")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": self.loaded,
            "missing_encoder": self.missing_encoder,
            "missing_head": self.missing_head,
            "unexpected": self.unexpected,
            "mismatched": self.mismatched,
            "adapted": self.adapted,
        }


def read_state_dict(source: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file or septet folder, on the CPU, keys as stored."""
    path = Path(source)
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.exists():
        raise NotFoundError(f"checkpoint {str(source)!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as error:
            raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    try:
        # weights_only: a checkpoint is data, never code to run.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error}); "
            "expected a .pth/.pt file saved with torch.save or a .safetensors file"
        ) from error
    return unwrap_state_dict(obj, str(path))


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the tensors inside what ``torch.load`` returned: a bare state dict, or a dict
    holding one under ``state_dict`` (MedicalNet), ``model`` or ``model_state_dict``."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise CheckpointError(
        f"{source} holds no tensors: expected a state dict or a dict with 'state_dict' "
        f"(MedicalNet's layout), got {type(obj).__name__}"
        + (f" with keys {sorted(obj)[:8]}" if isinstance(obj, dict) else "")
    )


def strip_wrappers(state: dict[str, torch.Tensor], wanted: set[str]) -> dict[str, torch.Tensor]:
    """Remove prefixes such as ``module.`` (DataParallel) when doing so makes keys match."""
    best = state
    best_hits = len(wanted & set(state))
    frontier = [state]
    for _ in range(3):  # e.g. "module.model.encoder.conv1.weight"
        next_frontier = []
        for candidate in frontier:
            for prefix in WRAPPER_PREFIXES:
                if not any(k.startswith(prefix) for k in candidate):
                    continue
                stripped = {
                    (k[len(prefix) :] if k.startswith(prefix) else k): v
                    for k, v in candidate.items()
                }
                hits = len(wanted & set(stripped))
                if hits > best_hits:
                    best, best_hits = stripped, hits
                next_frontier.append(stripped)
        frontier = next_frontier
    return best


def describe_resnet(keys: set[str]) -> str:
    """What ResNet a set of state-dict keys looks like, e.g. 'a ResNet-50 (bottleneck,
    3-4-6-3 blocks)', or a few sample keys when it is not one."""
    blocks = []
    for stage in range(1, 5):
        indices = {int(m.group(1)) for k in keys if (m := re.match(rf"layer{stage}\.(\d+)\.", k))}
        blocks.append(max(indices) + 1 if indices else 0)
    if all(blocks):
        bottleneck = any(re.match(r"layer\d\.\d+\.conv3\.", k) for k in keys)
        kind = "bottleneck" if bottleneck else "basic"
        depth = next(
            (
                d
                for d, (block, layers) in DEPTHS.items()
                if tuple(blocks) == layers and (block.expansion == 4) == bottleneck
            ),
            None,
        )
        name = f"a ResNet-{depth}" if depth else "a ResNet of no MedicalNet depth"
        return f"{name} ({kind} blocks, {'-'.join(map(str, blocks))} per stage)"
    sample = ", ".join(sorted(keys)[:5])
    return f"not a MedicalNet/MONAI ResNet (keys such as {sample})"


def load_pretrained(
    model: ResNet3d,
    source: str | os.PathLike[str] | dict[str, torch.Tensor],
    *,
    strict_encoder: bool = True,
) -> LoadReport:
    """Load what fits from a MedicalNet/MONAI/septet checkpoint into ``model``; refuse one
    that matches nothing (or, with ``strict_encoder``, one that leaves encoder weights unset)."""
    label = "state dict" if isinstance(source, dict) else str(source)
    raw = unwrap_state_dict(source, label) if isinstance(source, dict) else read_state_dict(source)
    own = model.state_dict()
    state = strip_wrappers(raw, set(own))
    report = LoadReport(source=label)
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        target = own[key]
        if value.shape == target.shape:
            to_load[key] = value
        elif key == "conv1.weight" and _can_spread_channels(value, target):
            # Pretrained on one modality, used on several: spread the filter over the new
            # input channels so each channel's response keeps its scale (timm does the same).
            to_load[key] = (
                value.sum(dim=1, keepdim=True).repeat(1, target.shape[1], 1, 1, 1)
                / (target.shape[1])
            )
            report.adapted.append(
                f"conv1.weight from {value.shape[1]} to {target.shape[1]} input channels"
            )
        else:
            report.mismatched.append(
                f"{key}: file {tuple(value.shape)} vs model {tuple(target.shape)}"
            )
    mismatched_keys = {m.split(":", 1)[0] for m in report.mismatched}
    for key in own:
        if key in to_load or key in mismatched_keys:
            continue
        if key.endswith("num_batches_tracked"):
            continue  # a counter, absent from checkpoints written before PyTorch 0.4.1
        (report.missing_encoder if is_encoder_key(key) else report.missing_head).append(key)
    report.loaded = sorted(to_load)
    counted = [k for k in own if is_encoder_key(k) and not k.endswith("num_batches_tracked")]
    loaded_encoder = [k for k in counted if k in to_load]
    if not loaded_encoder:
        raise CheckpointError(
            f"{label} matches nothing in a {_describe_model(model)}: it looks like "
            f"{describe_resnet(set(state))}; pass a MedicalNet, MONAI or septet ResNet checkpoint"
        )
    wrong_shape = [m for m in report.mismatched if is_encoder_key(m)]
    if strict_encoder and (report.missing_encoder or wrong_shape):
        problems = []
        if report.missing_encoder:
            problems.append(
                f"{len(report.missing_encoder)} missing, e.g. {report.missing_encoder[0]}"
            )
        if wrong_shape:
            problems.append(f"{len(wrong_shape)} with other shapes, e.g. {wrong_shape[0]}")
        raise CheckpointError(
            f"{label} fills only {len(loaded_encoder)} of {len(counted)} encoder tensors of a "
            f"{_describe_model(model)} ({'; '.join(problems)}); the file looks like "
            f"{describe_resnet(set(state))}. Create the model with the matching depth, or pass "
            "strict_encoder=False to load what fits"
        )
    model.load_state_dict(to_load, strict=False)
    return report


def _can_spread_channels(value: torch.Tensor, target: torch.Tensor) -> bool:
    return (
        value.ndim == 5
        and value.shape[0] == target.shape[0]
        and value.shape[2:] == target.shape[2:]
    )


def _describe_model(model: ResNet3d) -> str:
    c = model.config
    return f"ResNet-{c.depth} ({c.in_channels} input channel(s), {c.task} head)"


def save_model(model: ResNet3d, directory: str | os.PathLike[str], **extra: Any) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` as one atomic step:
    both are written to a fresh folder that then replaces the old one."""
    from safetensors.torch import save_file

    with atomic_directory(directory) as staging:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(tensors, str(staging / WEIGHTS_NAME), metadata={"format": "pt"})
        _fsync_file(staging / WEIGHTS_NAME)
        config = model.config.to_dict()
        if hasattr(model, "head_classes"):
            config["heads"] = dict(model.head_classes)
        atomic_write_json(staging / CONFIG_NAME, {**config, **extra})
    return Path(directory)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def read_config(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The config.json of a septet model folder."""
    path = Path(directory) / CONFIG_NAME
    if not path.exists():
        raise NotFoundError(
            f"{directory} has no {CONFIG_NAME}; a septet model folder holds "
            f"{WEIGHTS_NAME} and {CONFIG_NAME} (written by save_model)"
        )
    return json.loads(path.read_text())


def load_model(directory: str | os.PathLike[str], map_location: str = "cpu") -> ResNet3d:
    """Rebuild a model saved by ``save_model``: its config, then every weight (strictly)."""
    values = read_config(directory)
    known = {"depth", "task", "num_classes", "in_channels", "shortcut", "full_resolution"}
    config = ResNet3dConfig.from_dict({k: v for k, v in values.items() if k in known})
    if values.get("heads"):
        from septet.med3d.resnet import MultiHeadResNet3d

        model: ResNet3d = MultiHeadResNet3d(config, dict(values["heads"]))
        known.add("heads")
    else:
        model = ResNet3d(config)
    state = read_state_dict(directory)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{directory} does not fit its own config.json: {error}") from error
    model.extra_config = {k: v for k, v in values.items() if k not in known}
    return model.to(map_location)


def count_parameters(module: nn.Module) -> int:
    """The number of parameters (not buffers) of a module."""
    return sum(p.numel() for p in module.parameters())
