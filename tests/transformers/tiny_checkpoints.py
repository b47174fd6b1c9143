"""Tiny random BERT checkpoints built by HF transformers, with the real MiniLM tokenizer, for
tests of the layers above the models (fine-tuning, fill-mask, conversion, the CLI): they run
in a fraction of a second where the real model would take many."""

from __future__ import annotations

import shutil
from pathlib import Path

from septet.transformers.bundled import minilm_path

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def write_tiny_bert(folder: Path, head: str = "masked_lm", *, bin_format: bool = False) -> Path:
    """A 2-layer, 32-wide BERT over MiniLM's 30522-token vocabulary, random weights (seed 0),
    saved by HF with ``head`` ("masked_lm", "sequence_classification" or "base")."""
    import torch

    import transformers

    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    model_class = {
        "masked_lm": transformers.BertForMaskedLM,
        "sequence_classification": transformers.BertForSequenceClassification,
        "base": transformers.BertModel,
    }[head]
    torch.manual_seed(0)
    model = model_class(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    if bin_format:
        # The legacy layout: a pickled state dict named pytorch_model.bin beside config.json.
        config.architectures = [model_class.__name__]
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    else:
        model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_path() / name, folder / name)
    return folder
