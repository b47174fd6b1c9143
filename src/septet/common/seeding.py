"""Seed every random number generator septet uses, so a rerun on CPU gives identical results."""

from __future__ import annotations

import os
import random
import sys


def seed_everything(seed: int, *, deterministic: bool = True) -> None:
    """Seed Python, NumPy and (if imported or installed) torch; optionally force deterministic
    torch kernels, which makes CPU runs bit-identical at some cost in speed."""
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)  # inherited by subprocesses (data workers)
    import numpy as np

    np.random.seed(seed % 2**32)
    if "torch" in sys.modules or _installed("torch"):
        import torch

        torch.manual_seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
