"""Sentence embeddings: an encoder, a pooling over its token vectors, L2 normalisation.

This is what sentence-transformers computes for models such as all-MiniLM-L6-v2, read from
the same folder layout: ``modules.json`` names the transformer folder and the pooling folder
(``1_Pooling/config.json`` says mean, CLS, max or mean-sqrt-len pooling),
``sentence_bert_config.json`` gives the maximum sequence length, and a ``Normalize`` module
means unit-length outputs. A plain HF encoder folder (no modules.json) gets mean pooling.

Speed: texts are tokenized once, sorted by length and batched with neighbours of similar
length, so a batch is padded only to its own longest text, not to the longest overall.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from septet.common.progress import progress_bar
from septet.errors import ConfigError, InputError

POOLING_MODES = ("cls", "mean", "max", "mean_sqrt_len")
# sentence-transformers module types septet reproduces; anything else in modules.json is refused.
TRANSFORMER_MODULE = "sentence_transformers.models.Transformer"
POOLING_MODULE = "sentence_transformers.models.Pooling"
NORMALIZE_MODULE = "sentence_transformers.models.Normalize"


class SentenceEmbedder:
    """Texts -> fixed-size vectors; cosine similarity of vectors ranks texts by meaning."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        pooling: Sequence[str] = ("mean",),
        max_length: int | None = None,
    ):
        for mode in pooling:
            if mode not in POOLING_MODES:
                raise ConfigError(
                    f"unknown pooling {mode!r}; use one of {', '.join(POOLING_MODES)}"
                )
        if not pooling:
            raise ConfigError("pooling needs at least one mode (e.g. 'mean')")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = tuple(pooling)
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | Path,
        *,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        allow_download: bool = False,
        max_length: int | None = None,
    ) -> SentenceEmbedder:
        """Load a sentence-transformers folder (or a plain encoder folder) or cached Hub name.
        ``max_length`` overrides the folder's max_seq_length (tokens beyond are cut)."""
        from septet.transformers.auto import AutoModel
        from septet.transformers.checkpoint import resolve_model_path
        from septet.transformers.tokenizer import Tokenizer

        root = resolve_model_path(path_or_name, allow_download=allow_download)
        layout = read_sentence_transformers_layout(root)
        model = AutoModel.from_pretrained(layout["model_folder"], dtype=dtype, device=device)
        tokenizer = Tokenizer.from_pretrained(layout["model_folder"])
        positions = _max_positions(model)
        limit = max_length or layout["max_length"] or positions
        return cls(model, tokenizer, pooling=layout["pooling"], max_length=min(limit, positions))

    @property
    def dimension(self) -> int:
        """Length of each embedding."""
        config = self.model.config
        hidden = getattr(config, "hidden_size", None) or config.dim
        return hidden * len(self.pooling)

    def encode(
        self, texts: str | Sequence[str], batch_size: int = 32, normalize: bool = True
    ) -> torch.Tensor:
        """Embed ``texts``: (len(texts), dimension) float32 on the CPU, in input order, unit
        length when ``normalize``; one string gives one (dimension,) vector."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        for index, text in enumerate(batch):
            if not isinstance(text, str):
                raise InputError(f"texts[{index}] is a {type(text).__name__}, not a string")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        if not batch:
            return torch.zeros(0, self.dimension)

        encoded = self.tokenizer(
            batch,
            padding=False,
            truncation=True,
            max_length=self.max_length,
            return_tensors=None,
            return_token_type_ids=False,
        )["input_ids"]
        order = sorted(range(len(batch)), key=lambda i: -len(encoded[i]))
        device = next(self.model.parameters()).device
        out = torch.empty(len(batch), self.dimension)
        # A bar only for long jobs (many batches); quiet off a terminal.
        many = len(batch) >= 8 * batch_size
        bar_context = progress_bar(len(batch), "embedding") if many else contextlib.nullcontext()
        with torch.inference_mode(), bar_context as bar:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                ids, mask = _pad([encoded[i] for i in rows], self._pad_id(), device)
                hidden = self.model(ids, attention_mask=mask).last_hidden_state
                vectors = pool(hidden, mask, self.pooling).float()
                if normalize:
                    vectors = F.normalize(vectors, p=2, dim=1)
                out[rows] = vectors.cpu()
                if bar is not None:
                    bar.advance(len(rows))
        return out[0] if single else out

    def similarity(self, queries: str | Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        """Cosine similarity of every query to every document: (queries, documents)."""
        query_vectors = self.encode([queries] if isinstance(queries, str) else queries)
        return query_vectors @ self.encode(documents).T

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return 0 if pad is None else pad


def pool(hidden: torch.Tensor, mask: torch.Tensor, modes: Sequence[str]) -> torch.Tensor:
    """Sentence vectors (B, H * len(modes)) from token vectors (B, S, H) and the 0/1 mask,
    each mode as sentence-transformers computes it, concatenated in the given order."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    parts = []
    for mode in modes:
        if mode == "cls":
            parts.append(hidden[:, 0])
        elif mode == "max":
            parts.append(hidden.masked_fill(weights == 0, -1e9).max(dim=1).values)
        elif mode == "mean":
            parts.append((hidden * weights).sum(dim=1) / counts)
        elif mode == "mean_sqrt_len":
            parts.append((hidden * weights).sum(dim=1) / counts.sqrt())
        else:
            raise ConfigError(f"unknown pooling {mode!r}; use one of {', '.join(POOLING_MODES)}")
    return torch.cat(parts, dim=-1)


def _pad(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id rows into (ids, attention mask) tensors."""
    length = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad_id] * (length - len(r)) for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows], dtype=torch.long)
    return ids.to(device), mask.to(device)


def _max_positions(model: Any) -> int:
    embeddings = getattr(model, "embeddings", None)
    limit = getattr(embeddings, "max_tokens", None)
    return int(limit or model.config.max_position_embeddings)


def read_sentence_transformers_layout(root: Path) -> dict[str, Any]:
    """Where the encoder is, how to pool and how long inputs may be, from a
    sentence-transformers folder; a plain encoder folder means mean pooling, no length cap."""
    layout: dict[str, Any] = {"model_folder": root, "pooling": ("mean",), "max_length": None}
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return layout
    modules = _read_json(modules_file)
    if not isinstance(modules, list):
        raise ConfigError(f"{modules_file} must hold a list of modules")
    for module in modules:
        kind = module.get("type", "")
        folder = root / module.get("path", "")
        if kind == TRANSFORMER_MODULE:
            layout["model_folder"] = folder
            settings = folder / "sentence_bert_config.json"
            if settings.is_file():
                layout["max_length"] = _read_json(settings).get("max_seq_length")
        elif kind == POOLING_MODULE:
            layout["pooling"] = _pooling_modes(folder / "config.json")
        elif kind == NORMALIZE_MODULE:
            continue  # encode(normalize=True), the default, does this.
        else:
            raise ConfigError(
                f"{modules_file} lists a {kind!r} module, which septet does not implement; "
                "supported: Transformer, Pooling, Normalize"
            )
    return layout


def _pooling_modes(config_file: Path) -> tuple[str, ...]:
    config = _read_json(config_file) if config_file.is_file() else {}
    unsupported = [
        key
        for key in ("pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
        if config.get(key)
    ]
    if unsupported:
        raise ConfigError(
            f"{config_file} asks for {unsupported[0]}, which septet does not implement"
        )
    # sentence-transformers concatenates in this order: cls, max, mean, mean_sqrt_len.
    flags = {
        "cls": "pooling_mode_cls_token",
        "max": "pooling_mode_max_tokens",
        "mean": "pooling_mode_mean_tokens",
        "mean_sqrt_len": "pooling_mode_mean_sqrt_len_tokens",
    }
    modes = tuple(mode for mode, key in flags.items() if config.get(key))
    return modes or ("mean",)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
