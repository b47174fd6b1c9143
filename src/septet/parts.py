"""The seven parts of septet: what each re-creates and what it needs to be importable.

The CLI mounts a part's commands and demo only when the part is present and its libraries
are installed (checked with ``importlib.util.find_spec``, which imports nothing).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    name: str
    system: str  # the public system it re-creates
    summary: str
    requires: tuple[str, ...]  # top-level modules that its extra provides

    @property
    def extra(self) -> str:
        return self.name

    def is_present(self) -> bool:
        """True when the subpackage exists and every library it needs can be imported."""
        if importlib.util.find_spec(f"septet.{self.name}") is None:
            return False
        return all(importlib.util.find_spec(module) is not None for module in self.requires)


PARTS: tuple[Part, ...] = (
    Part(
        "transformers",
        "PyTorch-Transformers (Hugging Face)",
        "BERT, RoBERTa, DistilBERT, GPT-2 and Llama models that load published checkpoints",
        ("torch", "tokenizers", "safetensors"),
    ),
    Part(
        "textclass",
        "NeuralClassifier (Tencent)",
        "hierarchical multi-label text classification with many neural encoders",
        ("torch", "tokenizers"),
    ),
    Part(
        "tsdb",
        "TDengine",
        "a time-series database for IoT: super tables, tags, its SQL dialect, compression",
        ("pyarrow", "duckdb"),
    ),
    Part(
        "video",
        "video-object-removal",
        "draw a box on a video; the object is tracked, removed and the background filled in",
        ("cv2",),
    ),
    Part(
        "autocomplete",
        "python_autocomplete",
        "a neural Python code completer with an LSP server for editors",
        ("torch", "tokenizers"),
    ),
    Part(
        "bridge",
        "tfpyth",
        "differentiable calls between TensorFlow, PyTorch and JAX without copies",
        ("torch", "tensorflow", "jax"),
    ),
    Part(
        "med3d",
        "MedicalNet (Med3D)",
        "3D ResNets for medical volumes: transfer learning, segmentation, classification",
        ("torch", "nibabel"),
    ),
)


def part_named(name: str) -> Part:
    """The part called ``name``; raises NotFoundError listing the valid names."""
    from septet.errors import NotFoundError

    for part in PARTS:
        if part.name == name:
            return part
    names = ", ".join(p.name for p in PARTS)
    raise NotFoundError(f"no part named {name!r}; the parts are: {names}")


def present_parts() -> list[Part]:
    """The parts that are installed and importable, in table order."""
    return [part for part in PARTS if part.is_present()]
