"""Fill-mask: the likeliest tokens for each mask token of a text, from a masked-LM model."""

from __future__ import annotations

import inspect
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
