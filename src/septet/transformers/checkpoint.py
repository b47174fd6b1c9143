"""Finding and reading checkpoints: folders, files, the Hugging Face cache, every weight format.

Formats read: ``model.safetensors``, sharded ``model.safetensors.index.json``,
``pytorch_model.bin`` (and its sharded index) through ``torch.load(weights_only=True)``, which
refuses pickled code, and ``.gguf`` files through septet.transformers.gguf. The result is
always a ``{name: tensor}`` dict in the checkpoint's own (HF) names; mapping names onto a model
is modeling.py's job.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from septet.errors import CheckpointError, ConfigError, NotFoundError

# In the order a folder is searched: the first that exists is read.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_model_path(
    name_or_path: str | Path,
    *,
    allow_download: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """A local folder or file as is; otherwise a Hub name ("org/model") looked up in the
    Hugging Face cache (``cache_dir``, default HF_HUB_CACHE) offline, downloaded only when
    ``allow_download`` is true."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    name = str(name_or_path)
    if not _HUB_NAME.match(name):
        raise NotFoundError(
            f"{name!r} is neither an existing file or folder nor a Hub model name like "
            "'sentence-transformers/all-MiniLM-L6-v2'"
        )
    try:
        import huggingface_hub
        from huggingface_hub.errors import HFValidationError
    except ImportError as error:  # pragma: no cover - part of the transformers extra
        from septet.errors import MissingDependencyError

        raise MissingDependencyError("huggingface_hub", "transformers") from error
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.bin", "*.gguf"]
    try:
        folder = huggingface_hub.snapshot_download(
            name,
            local_files_only=not allow_download,
            allow_patterns=patterns,
            cache_dir=str(cache_dir) if cache_dir is not None else None,
        )
    except (OSError, ValueError, HFValidationError) as error:
        hint = (
            f"download it first (huggingface-cli download {name}) or allow downloading"
            if not allow_download
            else "check the name and your network"
        )
        raise NotFoundError(
            f"model {name!r} is not a local path and not in the Hugging Face cache; {hint}"
        ) from error
    return Path(folder)


def find_weights_file(folder: Path) -> Path:
    """The weights file of a model folder (see WEIGHT_FILES; else a single .gguf)."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    ggufs = sorted(folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return ggufs[0]
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    wanted = ", ".join(WEIGHT_FILES) + " or one .gguf file"
    if len(ggufs) > 1:
        wanted = "one .gguf file, not several (pass the file itself)"
    raise CheckpointError(
        f"{folder} has no weights septet can read; expected {wanted}; found: "
        f"{', '.join(present) or 'nothing'}"
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint (file, sharded index or model folder), by checkpoint name."""
    return load_checkpoint(path)[1]


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor]]:
    """(config.json dict or None when there is none, state dict) for a folder or a file.
    A GGUF file carries its own config, converted to HF's config.json keys."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"no checkpoint at {path}")
    weights = find_weights_file(path) if path.is_dir() else path
    if weights.suffix == ".gguf":
        from septet.transformers.gguf import read_gguf_checkpoint

        config, state_dict = read_gguf_checkpoint(weights)
        return config, state_dict
    config_file = weights.parent / "config.json"
    config = _read_json(config_file) if config_file.is_file() else None
    return config, _read_weights(weights)


def read_config_dict(path: str | Path) -> dict[str, Any]:
    """The config.json dict of a model folder (or beside a weight file); for a GGUF file,
    the config its metadata describes, in HF's keys."""
    path = Path(path)
    if path.suffix == ".gguf":
        config, _ = load_checkpoint(path)
        return config or {}
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.is_file():
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else []
        if len(ggufs) == 1:
            return read_config_dict(ggufs[0])
        raise ConfigError(f"no config.json at {config_file}; a model folder needs one")
    return _read_json(config_file)


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    name = file.name
    if name.endswith(".index.json"):
        return _read_sharded(file)
    if name.endswith(".safetensors"):
        return _read_safetensors(file)
    if name.endswith((".bin", ".pt", ".pth")):
        return _read_torch_pickle(file)
    raise CheckpointError(
        f"{file} is not a weight format septet reads; use .safetensors, a sharded "
        "*.index.json, pytorch_model.bin or .gguf"
    )


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(file)
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"cannot read safetensors file {file}: {error}") from error


def _read_torch_pickle(file: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises several types for a bad or unsafe pickle
        raise CheckpointError(
            f"cannot read {file} as PyTorch weights (torch.load with weights_only=True): "
            f"{str(error).splitlines()[0]}"
        ) from error
    if (
        isinstance(loaded, dict)
        and "state_dict" in loaded
        and isinstance(loaded["state_dict"], dict)
    ):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise CheckpointError(f"{file} does not hold a state dict of named tensors")
    return loaded


def _read_sharded(index_file: Path) -> dict[str, torch.Tensor]:
    index = _read_json(index_file)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index_file} has no 'weight_map' naming each tensor's shard")
    state_dict: dict[str, torch.Tensor] = {}
    for shard_name in sorted(set(weight_map.values())):
        shard = index_file.parent / shard_name
        if not shard.is_file():
            raise CheckpointError(f"{index_file} names shard {shard_name!r}, which is missing")
        state_dict.update(_read_weights(shard))
    absent = sorted(set(weight_map) - set(state_dict))
    if absent:
        raise CheckpointError(
            f"{index_file} lists tensors its shards do not hold: {', '.join(absent[:10])}"
        )
    return state_dict


def _read_json(file: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read {file} as JSON: {error}") from error
    if not isinstance(value, dict):
        raise ConfigError(f"{file} must hold a JSON object")
    return value
