"""Fill-mask: the likeliest tokens for each mask token of a text, from a masked-LM model."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from septet.errors import ConfigError, InputError

if TYPE_CHECKING:
    from septet.transformers.tokenizer import Tokenizer


def fill_mask(model: Any, tokenizer: Tokenizer, text: str, top_k: int = 5) -> list[dict[str, Any]]:
    """For each mask position of ``text``: ``{"position", "candidates": [{"token", "token_id",
    "score", "sequence"}, ...]}`` with the ``top_k`` tokens by probability, best first."""
    import torch

    if tokenizer.mask_token is None or tokenizer.mask_token_id is None:
        raise ConfigError("this tokenizer has no mask token; fill-mask needs a masked-LM model")
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    batch = tokenizer(text, truncation=True)
    ids = batch["input_ids"][0]
    positions = (ids == tokenizer.mask_token_id).nonzero().flatten().tolist()
    if not positions:
        raise InputError(f"the text has no {tokenizer.mask_token} token to fill")
    accepts = set(inspect.signature(model.forward).parameters)
    inputs = {k: v.to(model.device) for k, v in batch.items() if k in accepts}
    with torch.no_grad():
        logits = model(**inputs).logits[0].float()
    rows = []
    for position in positions:
        top = logits[position].softmax(-1).topk(min(top_k, logits.shape[-1]))
        candidates = []
        for score, token_id in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            filled = ids.clone()
            filled[position] = token_id
            candidates.append(
                {
                    "token": tokenizer.decode([token_id]).strip(),
                    "token_id": token_id,
                    "score": score,
                    "sequence": tokenizer.decode(filled, skip_special_tokens=True),
                }
            )
        rows.append({"position": position, "candidates": candidates})
    return rows


def load_masked_lm(path_or_name: str | Path) -> tuple[Any, Tokenizer]:
    """(model, tokenizer) of a checkpoint trained with a masked-LM head. A checkpoint without
    one (a sentence encoder such as all-MiniLM-L6-v2) is refused: its head would be random."""
    from septet.transformers.auto import AutoModelForMaskedLM
    from septet.transformers.checkpoint import read_config_dict, resolve_model_path
    from septet.transformers.tokenizer import Tokenizer

    path = resolve_model_path(path_or_name)
    architectures = [str(a) for a in read_config_dict(path).get("architectures") or []]
    if not any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures):
        raise InputError(
            f"{path} has no masked-LM head (architectures: {', '.join(architectures) or 'none'}); "
            "fill-mask needs a checkpoint such as bert-base-uncased or roberta-base"
        )
    return AutoModelForMaskedLM.from_pretrained(path), Tokenizer.from_pretrained(path)
