"""Generation: greedy and sampled decoding, logits processors, KV cache, batching, stop strings
and streaming. Small random models for the mechanics (HF's generate as the oracle), the real
SmolLM2 for text."""

from __future__ import annotations

import pytest
import torch

import transformers
from septet.errors import ConfigError, InputError
from septet.transformers.bundled import smollm2_gguf_path
from septet.transformers.generation import (
    GenerationConfig,
    apply_repetition_penalty,
    filter_top_k,
    filter_top_p,
    generate,
    generate_text,
    next_tokens,
    stream_generate,
    stream_text,
)
from septet.transformers.llama import LlamaForCausalLM
from septet.transformers.tokenizer import Tokenizer

VOCAB = 64
EOS = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(HF model, septet model): a 2-layer GQA Llama with weights large enough that its
    next-token distributions are peaked (no near-ties for greedy decoding to trip on)."""
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=1,
        eos_token_id=EOS,
        pad_token_id=0,
    )
    torch.manual_seed(11)
    hf_model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for param in hf_model.parameters():
            if param.dim() == 2:
                param.normal_(0, 0.3)
    folder = tmp_path_factory.mktemp("tiny-llama")
    hf_model.save_pretrained(folder)
    return hf_model, LlamaForCausalLM.from_pretrained(folder)


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_gguf_path()
    return LlamaForCausalLM.from_pretrained(path), Tokenizer.from_gguf(path)


def _left_padded_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(4, VOCAB, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    mask[2, :2] = 0
    return ids.masked_fill(mask == 0, 0), mask


# ------------------------------------------------------------------------------------------
# Against HF generate
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("penalty", [1.0, 1.5], ids=["greedy", "repetition-penalty"])
def test_greedy_generation_of_a_left_padded_batch_equals_hf_generate(tiny, penalty):
    hf_model, model = tiny
    ids, mask = _left_padded_prompts()
    expected = hf_model.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=20,
        do_sample=False,
        repetition_penalty=penalty,
        pad_token_id=0,
        eos_token_id=EOS,
    )
    got = generate(model, ids, mask, max_new_tokens=20, repetition_penalty=penalty)
    assert got.tolist() == expected.tolist()


def test_kv_cached_decoding_equals_recomputing_the_whole_sequence(tiny):
    _, model = tiny
    ids, mask = _left_padded_prompts()
    steps = list(stream_generate(model, ids, mask, max_new_tokens=12, eos_token_id=[]))
    sequence, sequence_mask = ids, mask
    with torch.no_grad():
        for step in steps:
            full = model(sequence, attention_mask=sequence_mask).logits[:, -1]
            assert step.tolist() == full.argmax(-1).tolist()
            sequence = torch.cat([sequence, step[:, None]], dim=1)
            sequence_mask = torch.cat([sequence_mask, torch.ones_like(step[:, None])], dim=1)


def test_generation_stops_at_eos_and_pads_finished_rows(tiny):
    _, model = tiny
    ids, mask = _left_padded_prompts()
    free = generate(model, ids, mask, max_new_tokens=30, eos_token_id=[])
    # Declare the token row 0 emits fifth to be end-of-sequence: row 0 must stop there.
    eos = int(free[0, ids.shape[1] + 4])
    out = generate(model, ids, mask, max_new_tokens=30, eos_token_id=eos, pad_token_id=0)
    new = out[:, ids.shape[1] :]
    first_eos = new[0].tolist().index(eos)
    assert first_eos <= 4
    assert set(new[0, first_eos + 1 :].tolist()) <= {0}
    longer = generate(model, ids, mask, max_new_tokens=30, eos_token_id=eos, min_new_tokens=10)
    assert eos not in longer[0, ids.shape[1] : ids.shape[1] + 10].tolist()


# ------------------------------------------------------------------------------------------
# Logits processors and sampling
# ------------------------------------------------------------------------------------------


def test_processors_match_hf_logits_warpers():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, generator=generator) * 3
    history = torch.randint(0, 50, (4, 7), generator=generator)
    seen = torch.zeros(4, 50, dtype=torch.bool).scatter_(1, history, True)
    processors = transformers.generation.logits_process
    for k in (1, 5, 49):
        expected = processors.TopKLogitsWarper(k)(history, logits.clone())
        assert torch.equal(filter_top_k(logits, k), expected)
    for p in (0.05, 0.5, 0.9, 0.999):
        expected = processors.TopPLogitsWarper(p)(history, logits.clone())
        assert torch.equal(torch.isinf(filter_top_p(logits, p)), torch.isinf(expected)), p
    expected = processors.RepetitionPenaltyLogitsProcessor(1.3)(history, logits.clone())
    torch.testing.assert_close(apply_repetition_penalty(logits, seen, 1.3), expected)


def test_sampling_follows_the_temperature_scaled_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]).repeat(20000, 1)
    config = GenerationConfig(do_sample=True, temperature=0.7, top_k=0)
    drawn = next_tokens(logits, None, config, torch.Generator().manual_seed(1))
    frequencies = torch.bincount(drawn, minlength=5).float() / len(drawn)
    expected = (logits[0] / 0.7).softmax(-1)
    assert (frequencies - expected).abs().max() < 0.015


def test_sampling_is_reproducible_with_a_seed_and_respects_top_k_and_top_p(tiny):
    _, model = tiny
    ids, mask = _left_padded_prompts()
    settings = dict(max_new_tokens=15, do_sample=True, temperature=1.5, eos_token_id=[])
    first = generate(model, ids, mask, seed=123, top_k=3, **settings)
    again = generate(model, ids, mask, seed=123, top_k=3, **settings)
    other = generate(model, ids, mask, seed=124, top_k=3, **settings)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    nucleus = generate(model, ids, mask, seed=7, top_k=0, top_p=0.6, **settings)
    for tokens, check in ((first, "top_k"), (nucleus, "top_p")):
        full_mask = torch.cat([mask, torch.ones_like(tokens[:, ids.shape[1] :])], dim=1)
        with torch.no_grad():
            logits = model(tokens, attention_mask=full_mask).logits / 1.5
        for t in range(ids.shape[1], tokens.shape[1]):
            step_logits = logits[:, t - 1]
            if check == "top_k":
                allowed = ~torch.isinf(filter_top_k(step_logits, 3))
            else:
                allowed = ~torch.isinf(filter_top_p(step_logits, 0.6))
            chosen = tokens[:, t]
            assert allowed[torch.arange(3), chosen].all(), (check, t)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="temprature"):
        GenerationConfig().updated(temprature=0.5)
    with pytest.raises(ConfigError, match="top_p"):
        GenerationConfig(top_p=0.0)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)


def test_an_all_padding_prompt_is_an_input_error(tiny):
    _, model = tiny
    with pytest.raises(InputError, match="empty"):
        generate(model, torch.tensor([[0, 0]]), torch.tensor([[0, 0]]))


# ------------------------------------------------------------------------------------------
# Text: SmolLM2
# ------------------------------------------------------------------------------------------


def _chat(tokenizer: Tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": question}])


def test_batched_left_padded_generation_equals_one_prompt_at_a_time(smollm2):
    model, tokenizer = smollm2
    prompts = [
        _chat(tokenizer, "What is the capital of France?"),
        "The three primary colours are",
        _chat(tokenizer, "Name a yellow fruit."),
    ]
    batched = generate_text(model, tokenizer, prompts, max_new_tokens=8)
    one_by_one = [generate_text(model, tokenizer, p, max_new_tokens=8) for p in prompts]
    assert batched == one_by_one
    assert "Paris" in batched[0]


def test_stop_strings_cut_the_text_and_streaming_pieces_join_to_it(smollm2):
    model, tokenizer = smollm2
    prompt = _chat(tokenizer, "What is the capital of France?")
    full = generate_text(model, tokenizer, prompt, max_new_tokens=16)
    assert "Paris" in full
    pieces = list(stream_text(model, tokenizer, prompt, max_new_tokens=16))
    assert len(pieces) > 3
    assert "".join(pieces) == full
    # "of Fr" ends inside a token (" France"): the held-back tail must not leak into a piece.
    for stop in ("Paris", "of Fr"):
        expected = full[: full.index(stop)]
        assert generate_text(model, tokenizer, prompt, max_new_tokens=16, stop_strings=[stop]) == (
            expected
        )
        streamed = stream_text(model, tokenizer, prompt, max_new_tokens=16, stop_strings=[stop])
        assert "".join(streamed) == expected


def test_streamed_sampling_with_a_seed_equals_generate_text(smollm2):
    model, tokenizer = smollm2
    settings = dict(max_new_tokens=12, do_sample=True, seed=3, temperature=0.9, top_p=0.9)
    text = generate_text(model, tokenizer, "Once upon a time", **settings)
    assert "".join(stream_text(model, tokenizer, "Once upon a time", **settings)) == text
    assert len(text) > 20
