"""Encoders match Hugging Face transformers: given a small random BERT, RoBERTa or DistilBERT
built and saved by HF, when septet loads it, then hidden states and every head's logits agree
within 1e-4 (fp32) on a batch with padding; and what septet saves, HF loads back unchanged."""

from __future__ import annotations

import pytest
import torch

from septet import transformers as st

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert"}
HEADS = ("Model", "ForMaskedLM", "ForSequenceClassification", "ForTokenClassification")
HEADS += ("ForQuestionAnswering",)
TOLERANCE = 1e-4


def padded_batch(pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Three sequences of 11, 7 and 3 real tokens, padded with the model's pad id."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (3, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    return ids.masked_fill(mask == 0, pad_token_id), mask


def outputs_of(output) -> dict[str, torch.Tensor]:
    names = ("last_hidden_state", "pooler_output", "logits", "start_logits", "end_logits")
    found = {n: getattr(output, n) for n in names if getattr(output, n, None) is not None}
    for index, state in enumerate(output.hidden_states or ()):
        found[f"hidden_states[{index}]"] = state
    return found


def assert_close(expected: dict, actual: dict) -> None:
    assert set(expected) == set(actual), (sorted(expected), sorted(actual))
    for name, value in expected.items():
        error = (value - actual[name]).abs().max().item()
        assert error <= TOLERANCE, f"{name}: max |HF - septet| = {error:.2e}"


@pytest.mark.parametrize(
    ("family", "head"), [(f, h) for f in FAMILIES for h in HEADS], ids=lambda v: str(v)
)
def test_septet_matches_hf_and_hf_loads_what_septet_saves(
    family, head, hf, tiny_hf_config, tmp_path
):
    torch.manual_seed(0)
    config = tiny_hf_config(family, num_labels=2 if head == "ForQuestionAnswering" else 3)
    hf_model = getattr(hf, FAMILIES[family] + head)(config).eval()
    hf_model.save_pretrained(tmp_path / "hf")
    ids, mask = padded_batch(config.pad_token_id)

    model = getattr(st, FAMILIES[family] + head).from_pretrained(tmp_path / "hf")
    with torch.no_grad():
        expected = outputs_of(
            hf_model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        )
        actual = outputs_of(model(ids, attention_mask=mask, output_hidden_states=True))
    assert_close(expected, actual)

    model.save_pretrained(tmp_path / "septet")
    reloaded = getattr(hf, FAMILIES[family] + head).from_pretrained(tmp_path / "septet").eval()
    with torch.no_grad():
        again = outputs_of(reloaded(input_ids=ids, attention_mask=mask, output_hidden_states=True))
    assert_close(expected, again)


@pytest.mark.parametrize("head", ["Model", "ForMaskedLM", "ForSequenceClassification"])
def test_xlm_roberta_is_roberta_under_its_own_model_type(head, hf, tiny_hf_config, tmp_path):
    torch.manual_seed(0)
    hf_model = getattr(hf, "XLMRoberta" + head)(tiny_hf_config("xlm-roberta")).eval()
    hf_model.save_pretrained(tmp_path)
    model = st.AutoModel if head == "Model" else getattr(st, "AutoModel" + head)
    model = model.from_pretrained(tmp_path)
    assert type(model).__name__ == "XLMRoberta" + head
    ids, mask = padded_batch(hf_model.config.pad_token_id)
    with torch.no_grad():
        expected = outputs_of(hf_model(input_ids=ids, attention_mask=mask))
        actual = outputs_of(model(ids, attention_mask=mask))
    assert_close(expected, actual)


@pytest.mark.parametrize("family", FAMILIES)
def test_fused_inference_path_equals_the_autograd_path(family, tiny_hf_config):
    """At inference on CPU the linears run with bias, activation and residual fused (oneDNN);
    with autograd on they run unfused. Both compute the same function."""
    config_class = {"bert": st.BertConfig, "roberta": st.RobertaConfig}.get(
        family, st.DistilBertConfig
    )
    config = config_class.from_dict(tiny_hf_config(family).to_dict())
    model = getattr(st, FAMILIES[family] + "ForMaskedLM")(config).eval()
    ids, mask = padded_batch(config.pad_token_id)
    with torch.no_grad():
        fused = model(ids, attention_mask=mask).logits
    unfused = model(ids, attention_mask=mask).logits.detach()
    assert (fused - unfused).abs().max().item() <= 1e-5
    with torch.no_grad():
        half = model.to(torch.bfloat16)(ids, attention_mask=mask).logits.float()
    assert (half - unfused).abs().max().item() <= 0.05 * unfused.abs().max().item()


def test_token_type_ids_change_bert_outputs_as_in_hf(hf, tiny_hf_config, tmp_path):
    torch.manual_seed(0)
    hf_model = hf.BertModel(tiny_hf_config("bert")).eval()
    hf_model.save_pretrained(tmp_path)
    model = st.BertModel.from_pretrained(tmp_path)
    ids, mask = padded_batch(0)
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask, token_type_ids=types)
        actual = model(ids, attention_mask=mask, token_type_ids=types)
    assert_close(outputs_of(expected), outputs_of(actual))


def test_padding_does_not_change_the_real_tokens(tiny_hf_config, hf, tmp_path):
    """A sequence alone and the same sequence padded in a batch give the same vectors."""
    torch.manual_seed(0)
    hf.RobertaModel(tiny_hf_config("roberta")).save_pretrained(tmp_path)
    model = st.RobertaModel.from_pretrained(tmp_path)
    ids, mask = padded_batch(1)
    with torch.no_grad():
        batched = model(ids, attention_mask=mask).last_hidden_state
        alone = model(ids[1:2, :7]).last_hidden_state
    assert (batched[1, :7] - alone[0]).abs().max().item() <= TOLERANCE


def test_a_fresh_model_is_deterministic_in_eval_and_random_in_train(tiny_hf_config):
    config = st.BertConfig.from_dict(tiny_hf_config("bert").to_dict())
    model = st.BertForSequenceClassification(config)
    ids, mask = padded_batch(0)
    model.eval()
    with torch.no_grad():
        first, second = model(ids, mask).logits, model(ids, mask).logits
    assert torch.equal(first, second)
    model.train()
    torch.manual_seed(0)
    assert not torch.equal(model(ids, mask).logits, model(ids, mask).logits)


def test_bad_input_ids_are_refused_with_the_reason(tiny_hf_config):
    model = st.BertModel(st.BertConfig.from_dict(tiny_hf_config("bert").to_dict())).eval()
    with pytest.raises(st_errors().InputError, match="longer than the model's 64 positions"):
        model(torch.ones(1, 65, dtype=torch.long))
    with pytest.raises(st_errors().InputError, match="outside the vocabulary"):
        model(torch.full((1, 4), 99))
    with pytest.raises(st_errors().InputError, match=r"\(batch, sequence\)"):
        model(torch.ones(4, dtype=torch.long))
    with pytest.raises(st_errors().InputError, match="attention_mask has shape"):
        model(torch.ones(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 5))


def st_errors():
    import septet.errors

    return septet.errors
