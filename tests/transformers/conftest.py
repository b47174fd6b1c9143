"""Fixtures shared by the transformers tests: tiny random HF configs and HF itself as oracle."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def hf():
    """Hugging Face transformers, the reference implementation (quiet, offline)."""
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


@pytest.fixture(scope="session")
def tiny_hf_config(hf):
    """A function (family, num_labels=3) -> a small random-model config built by HF."""

    def make(family: str, num_labels: int = 3):
        common = {"vocab_size": 99, "max_position_embeddings": 64, "num_labels": num_labels}
        if family == "bert":
            return hf.BertConfig(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                type_vocab_size=2,
                **common,
            )
        if family in ("roberta", "xlm-roberta"):
            make_config = hf.RobertaConfig if family == "roberta" else hf.XLMRobertaConfig
            return make_config(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                type_vocab_size=1,
                **common,
            )
        if family == "distilbert":
            return hf.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37, **common)
        raise ValueError(family)

    return make


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's torch work on one thread: the tiny models here gain nothing from
    intra-op parallelism, and on a shared CPU two spinning threads can be several times slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
