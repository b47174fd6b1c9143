"""Task heads: given labels, each head's loss equals HF's; a head missing from a checkpoint is
initialised fresh (and said so), and it trains."""

from __future__ import annotations

import logging

import pytest
import torch

from septet import transformers as st

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert"}
IDS = torch.tensor([[5, 15, 47, 30, 8, 8], [5, 9, 81, 33, 12, 7]])
MASK = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])


def pair(hf, tiny_hf_config, tmp_path, family: str, head: str, **config_changes):
    """An HF model with random weights and the septet model loaded from its checkpoint."""
    torch.manual_seed(0)
    config = tiny_hf_config(family, num_labels=config_changes.pop("num_labels", 3))
    for key, value in config_changes.items():
        setattr(config, key, value)
    hf_model = getattr(hf, FAMILIES[family] + head)(config).eval()
    hf_model.save_pretrained(tmp_path)
    return hf_model, getattr(st, FAMILIES[family] + head).from_pretrained(tmp_path)


def losses(hf_model, model, **labels) -> tuple[float, float]:
    with torch.no_grad():
        expected = hf_model(input_ids=IDS, attention_mask=MASK, **labels).loss
        actual = model(IDS, attention_mask=MASK, **labels).loss
    return expected.item(), actual.item()


@pytest.mark.parametrize("family", FAMILIES)
def test_sequence_classification_losses_match_hf(family, hf, tiny_hf_config, tmp_path):
    cases = [
        ({}, {"labels": torch.tensor([2, 0])}),
        (
            {"problem_type": "multi_label_classification"},
            {"labels": torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])},
        ),
        ({"num_labels": 1}, {"labels": torch.tensor([0.5, -1.25])}),
    ]
    for index, (changes, labels) in enumerate(cases):
        folder = tmp_path / str(index)
        hf_model, model = pair(
            hf, tiny_hf_config, folder, family, "ForSequenceClassification", **changes
        )
        expected, actual = losses(hf_model, model, **labels)
        assert actual == pytest.approx(expected, abs=1e-5), changes


def test_multi_label_is_chosen_from_float_labels_as_in_hf(hf, tiny_hf_config, tmp_path):
    hf_model, model = pair(hf, tiny_hf_config, tmp_path, "bert", "ForSequenceClassification")
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    expected, actual = losses(hf_model, model, labels=labels)
    assert actual == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_token_mlm_and_qa_losses_match_hf(family, hf, tiny_hf_config, tmp_path):
    token_labels = torch.tensor([[0, 2, 1, -100, -100, -100], [1, 1, 0, 2, 2, -100]])
    hf_model, model = pair(hf, tiny_hf_config, tmp_path / "tok", family, "ForTokenClassification")
    expected, actual = losses(hf_model, model, labels=token_labels)
    assert actual == pytest.approx(expected, abs=1e-5)

    mlm_labels = torch.full_like(IDS, -100)
    mlm_labels[0, 2], mlm_labels[1, 4] = 47, 12
    hf_model, model = pair(hf, tiny_hf_config, tmp_path / "mlm", family, "ForMaskedLM")
    expected, actual = losses(hf_model, model, labels=mlm_labels)
    assert actual == pytest.approx(expected, abs=1e-5)

    hf_model, model = pair(
        hf, tiny_hf_config, tmp_path / "qa", family, "ForQuestionAnswering", num_labels=2
    )
    # The second end position lies past the sequence: ignored, as in HF.
    positions = {"start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 40])}
    expected, actual = losses(hf_model, model, **positions)
    assert actual == pytest.approx(expected, abs=1e-5)


def test_a_head_missing_from_the_checkpoint_is_initialised_and_reported(
    hf, tiny_hf_config, tmp_path, caplog
):
    torch.manual_seed(0)
    hf.BertModel(tiny_hf_config("bert")).save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="septet.transformers"):
        model = st.BertForSequenceClassification.from_pretrained(tmp_path, num_labels=4)
    assert "classifier.weight" in caplog.text and "freshly initialised" in caplog.text
    assert model.classifier.weight.shape == (4, 32)
    assert model.config.num_labels == 4
    # HF's initialisation: normal(0, initializer_range) weights, zero bias.
    assert model.classifier.bias.abs().max().item() == 0
    assert 0.005 < model.classifier.weight.std().item() < 0.05


def test_a_head_trains(hf, tiny_hf_config, tmp_path):
    torch.manual_seed(0)
    hf.DistilBertModel(tiny_hf_config("distilbert")).save_pretrained(tmp_path)
    model = st.DistilBertForSequenceClassification.from_pretrained(tmp_path, num_labels=2).train()
    labels = torch.tensor([0, 1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(25):
        loss = model(IDS, attention_mask=MASK, labels=labels).loss
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 4


def test_a_checkpoint_without_pooler_gives_no_pooler_output(hf, tiny_hf_config, tmp_path, caplog):
    """sentence-transformers checkpoints may lack BERT's pooler: septet leaves it out rather
    than inventing random weights; a classifier on top initialises it as a new head."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    hf.BertModel(tiny_hf_config("bert")).save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    save_file(
        {k: v for k, v in tensors.items() if "pooler" not in k}, tmp_path / "model.safetensors"
    )
    with caplog.at_level(logging.WARNING, logger="septet.transformers"):
        model = st.BertModel.from_pretrained(tmp_path)
    assert model.pooler is None and not caplog.text
    with torch.no_grad():
        out = model(IDS, attention_mask=MASK)
    assert out.pooler_output is None and out.last_hidden_state.shape == (2, 6, 32)

    with caplog.at_level(logging.WARNING, logger="septet.transformers"):
        st.BertForSequenceClassification.from_pretrained(tmp_path)
    assert "bert.pooler.dense.weight" in caplog.text
