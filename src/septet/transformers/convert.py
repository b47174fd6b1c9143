"""Checkpoint conversion: a GGUF file or a pickled ``pytorch_model.bin`` (or any checkpoint
septet reads) to a safetensors model folder: ``model.safetensors`` + ``config.json`` +
tokenizer files, which septet and HF transformers both load.

Tensors keep HF's names (GGUF tensors are renamed and dequantised on reading, by
septet.transformers.gguf), so the folder is a plain HF checkpoint. Every file is written
atomically; the weights are checked against the architecture the config names before
anything is written, so a broken source never produces a folder that looks fine.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from septet.common.atomic import atomic_write_bytes, atomic_write_json
from septet.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "float32", "float16", "bfloat16")
# Files beside a .bin that belong in the converted folder as they are.
COPIED_FILES = ("generation_config.json",)


def convert_checkpoint(
    source: str | Path, output: str | Path, *, dtype: str = "auto"
) -> list[Path]:
    """Write ``output/`` from ``source`` (see the module docstring); returns the files written.
    ``dtype``: "auto" keeps each tensor's stored type (GGUF: float32), or cast floats to
    float32/float16/bfloat16."""
    import torch

    from septet.transformers.checkpoint import load_checkpoint, resolve_model_path

    if dtype not in DTYPES:
        raise ConfigError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    source = resolve_model_path(source)
    output = Path(output)
    if output.resolve() == (source if source.is_dir() else source.parent).resolve():
        raise ConfigError("the output folder must differ from the source's folder")
    config, state_dict = load_checkpoint(source)
    if config is None:
        raise CheckpointError(
            f"{source} has no config.json beside it; the converted folder needs one to say "
            "which architecture the weights belong to"
        )
    _check_against_architecture(config, state_dict, str(source))
    target = getattr(torch, dtype) if dtype != "auto" else None
    tensors = {
        # Clones: safetensors refuses tensors that share memory (tied embeddings).
        name: (tensor.to(target) if target is not None and tensor.is_floating_point() else tensor)
        .detach()
        .contiguous()
        .clone()
        for name, tensor in state_dict.items()
    }
    from safetensors.torch import save

    output.mkdir(parents=True, exist_ok=True)
    written = [output / "model.safetensors", output / "config.json"]
    atomic_write_bytes(written[0], save(tensors, metadata={"format": "pt"}))
    config = dict(config)
    if target is not None:
        config["torch_dtype"] = dtype
    atomic_write_json(written[1], config)
    written += _convert_tokenizer(source, output)
    folder = source if source.is_dir() else source.parent
    if source.suffix != ".gguf":
        for name in COPIED_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, output / name)
                written.append(output / name)
    return written


def _check_against_architecture(
    config: dict, state_dict: dict[str, torch.Tensor], source: str
) -> None:
    """Load the weights into septet's class named by the config's ``architectures`` (strict
    key and shape checks); an architecture septet does not implement is converted as is."""
    import septet.transformers as package
    from septet.transformers.modeling import no_weight_init

    names = [n for n in config.get("architectures") or [] if n in package.__all__]
    if not names:
        return
    model_class = getattr(package, names[0])
    with no_weight_init():
        model = model_class(model_class.config_class.from_dict(config))
    model.load_checkpoint_state_dict(dict(state_dict), source=source)


def _convert_tokenizer(source: Path, output: Path) -> list[Path]:
    from septet.transformers.tokenizer import Tokenizer

    folder = source if source.is_dir() else source.parent
    has_files = source.suffix == ".gguf" or any(
        (folder / name).is_file() for name in ("tokenizer.json", "vocab.txt", "vocab.json")
    )
    if not has_files:
        return []
    return Tokenizer.from_pretrained(
        source if source.suffix == ".gguf" else folder
    ).save_pretrained(output)
