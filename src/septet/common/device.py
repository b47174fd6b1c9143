"""Which torch device to compute on: an explicit choice, else ``SEPTET_DEVICE``, else the best
available (cuda, then mps, then cpu)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from septet.errors import ConfigError

if TYPE_CHECKING:
    import torch

DEVICE_KINDS = ("cpu", "cuda", "mps")


def choose_device(preferred: str | None = None) -> torch.device:
    """The torch device to use; an unavailable explicit choice is an error, not a fallback."""
    import torch

    choice = preferred or os.environ.get("SEPTET_DEVICE") or "auto"
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = choice.split(":", 1)[0]
    if kind not in DEVICE_KINDS:
        raise ConfigError(
            f"unknown device {choice!r}; use one of auto, {', '.join(DEVICE_KINDS)} (e.g. cuda:1)"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {choice!r} was asked for but CUDA is not available here; use cpu"
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {choice!r} was asked for but MPS is not available here; use cpu")
    return torch.device(choice)
