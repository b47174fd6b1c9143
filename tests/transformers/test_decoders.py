"""Decoder families against HF transformers: small random models built and saved by HF, loaded
by septet, compared on left-padded batches; save_pretrained output loads back into HF."""

from __future__ import annotations

import json

import pytest
import torch

import transformers
from septet.errors import CheckpointError, ConfigError, InputError
from septet.transformers.gpt2 import GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2Model
from septet.transformers.llama import (
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaModel,
    MistralForCausalLM,
    Qwen2ForCausalLM,
)

TOLERANCE = 1e-4
SMALL_LLAMA = dict(
    vocab_size=101,
    hidden_size=48,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=6,
    num_key_value_heads=2,
    max_position_embeddings=64,
)


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """HF initialises biases to zero and norms to one; perturb every parameter so that a
    bias or norm weight loaded into the wrong place (or not at all) shows."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval()


def _left_padded_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(0, vocab, (3, 13), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    mask[2, :1] = 0
    # HF's forward takes positions as given; generate() derives them from the mask like this.
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    return ids, mask, positions


def _compare(hf_model, septet_model, vocab: int) -> None:
    ids, mask, positions = _left_padded_batch(vocab)
    with torch.no_grad():
        expected = hf_model(
            ids, attention_mask=mask, position_ids=positions, output_hidden_states=True
        )
        got = septet_model(ids, attention_mask=mask, output_hidden_states=True)
    real = mask.bool()
    assert len(got.hidden_states) == len(expected.hidden_states)
    pairs = zip(expected.hidden_states, got.hidden_states, strict=True)
    for layer, (want, have) in enumerate(pairs):
        error = (want - have)[real].abs().max().item()
        assert error < TOLERANCE, f"hidden state {layer} differs by {error}"
    error = (expected.logits - got.logits)[real].abs().max().item()
    assert error < TOLERANCE, f"logits differ by {error}"


LLAMA_FAMILY = [
    pytest.param(transformers.LlamaConfig, LlamaForCausalLM, {}, id="llama-untied"),
    pytest.param(
        transformers.LlamaConfig, LlamaForCausalLM, {"tie_word_embeddings": True}, id="llama-tied"
    ),
    pytest.param(
        transformers.LlamaConfig,
        LlamaForCausalLM,
        {"attention_bias": True, "mlp_bias": True, "head_dim": 16},
        id="llama-biases-wide-heads",
    ),
    pytest.param(
        transformers.LlamaConfig,
        LlamaForCausalLM,
        {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
        id="rope-linear",
    ),
    pytest.param(
        transformers.LlamaConfig,
        LlamaForCausalLM,
        # max_position_embeddings below the batch length, so the NTK base actually grows
        {"rope_scaling": {"rope_type": "dynamic", "factor": 3.0}, "max_position_embeddings": 8},
        id="rope-dynamic",
    ),
    pytest.param(
        transformers.LlamaConfig,
        LlamaForCausalLM,
        {
            "rope_scaling": {
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 16,
            },
            "rope_theta": 500000.0,
        },
        id="rope-llama3",
    ),
    pytest.param(
        transformers.LlamaConfig,
        LlamaForCausalLM,
        {
            "rope_scaling": {
                "rope_type": "yarn",
                "factor": 4.0,
                "original_max_position_embeddings": 16,
            }
        },
        id="rope-yarn",
    ),
    pytest.param(
        transformers.MistralConfig, MistralForCausalLM, {"sliding_window": 4}, id="mistral-window"
    ),
    pytest.param(
        transformers.Qwen2Config,
        Qwen2ForCausalLM,
        {"tie_word_embeddings": False, "rope_theta": 1000000.0},
        id="qwen2-qkv-bias",
    ),
    pytest.param(
        transformers.Qwen2Config,
        Qwen2ForCausalLM,
        {"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1},
        id="qwen2-window-on-later-layers",
    ),
]


@pytest.mark.parametrize(("hf_config", "septet_class", "settings"), LLAMA_FAMILY)
def test_llama_family_matches_hf_on_left_padded_batch(hf_config, septet_class, settings, tmp_path):
    hf_model = _randomised(
        transformers.AutoModelForCausalLM.from_config(hf_config(**{**SMALL_LLAMA, **settings}))
    )
    hf_model.save_pretrained(tmp_path)
    model = septet_class.from_pretrained(tmp_path)
    _compare(hf_model, model, SMALL_LLAMA["vocab_size"])


GPT2_SMALL = dict(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=40, bos_token_id=0,
                  eos_token_id=0)  # fmt: skip


@pytest.mark.parametrize(
    "settings",
    [{}, {"scale_attn_by_inverse_layer_idx": True, "activation_function": "gelu", "n_inner": 40}],
    ids=["gpt2", "gpt2-variant"],
)
def test_gpt2_matches_hf_on_left_padded_batch(settings, tmp_path):
    hf_model = _randomised(
        transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2_SMALL, **settings))
    )
    hf_model.save_pretrained(tmp_path)
    model = GPT2LMHeadModel.from_pretrained(tmp_path)
    _compare(hf_model, model, GPT2_SMALL["vocab_size"])


def test_base_models_load_head_checkpoints_and_give_the_same_hidden_states(tmp_path):
    hf_model = _randomised(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2_SMALL)))
    hf_model.save_pretrained(tmp_path / "gpt2")
    ids = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        want = hf_model.transformer(ids).last_hidden_state
        got = GPT2Model.from_pretrained(tmp_path / "gpt2")(ids).last_hidden_state
    torch.testing.assert_close(got, want, atol=TOLERANCE, rtol=0)

    hf_llama = _randomised(transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL_LLAMA)))
    hf_llama.save_pretrained(tmp_path / "llama")
    with torch.no_grad():
        want = hf_llama.model(ids).last_hidden_state
        got = LlamaModel.from_pretrained(tmp_path / "llama")(ids).last_hidden_state
    torch.testing.assert_close(got, want, atol=TOLERANCE, rtol=0)


def test_legacy_gpt2_checkpoint_without_prefix_and_with_mask_buffers_loads(tmp_path):
    """The original gpt2 upload: no ``transformer.`` prefix, Conv1D layout, attn.bias buffers."""
    from safetensors.torch import save_file

    hf_model = _randomised(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2_SMALL)))
    state = {
        k.removeprefix("transformer."): v.contiguous()
        for k, v in hf_model.state_dict().items()
        if k != "lm_head.weight"
    }
    state["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 40, 40))
    state["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(state, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(hf_model.config.to_dict()))
    model = GPT2LMHeadModel.from_pretrained(tmp_path)
    _compare(hf_model, model, GPT2_SMALL["vocab_size"])


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2"])
def test_save_pretrained_loads_back_into_hf_with_the_same_logits(family, tmp_path):
    if family == "gpt2":
        hf_model = _randomised(transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2_SMALL)))
        septet_class, vocab = GPT2LMHeadModel, GPT2_SMALL["vocab_size"]
    else:
        config = (transformers.LlamaConfig if family == "llama" else transformers.Qwen2Config)(
            **SMALL_LLAMA, rope_scaling={"rope_type": "linear", "factor": 2.0}
        )
        hf_model = _randomised(transformers.AutoModelForCausalLM.from_config(config))
        septet_class = LlamaForCausalLM if family == "llama" else Qwen2ForCausalLM
        vocab = SMALL_LLAMA["vocab_size"]
    hf_model.save_pretrained(tmp_path / "hf")
    septet_class.from_pretrained(tmp_path / "hf").save_pretrained(tmp_path / "septet")
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "septet").eval()
    ids = torch.randint(0, vocab, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, hf_model(ids).logits, atol=1e-6, rtol=0)


def test_cached_decoding_equals_full_recompute(tmp_path):
    hf_model = _randomised(
        transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**SMALL_LLAMA, sliding_window=5,
                                                               use_sliding_window=True,
                                                               max_window_layers=1))
    )  # fmt: skip
    hf_model.save_pretrained(tmp_path)
    model = Qwen2ForCausalLM.from_pretrained(tmp_path)
    ids, mask, _ = _left_padded_batch(SMALL_LLAMA["vocab_size"])
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        cache = model.new_cache(3, capacity=4)  # too small on purpose: the cache must grow
        steps = [model(ids[:, :6], attention_mask=mask[:, :6], past_key_values=cache).logits]
        for t in range(6, ids.shape[1]):
            step = model(ids[:, t : t + 1], attention_mask=mask[:, : t + 1], past_key_values=cache)
            steps.append(step.logits)
    stepped = torch.cat(steps, dim=1)
    real = mask.bool()
    assert (stepped - full)[real].abs().max().item() < TOLERANCE
    assert cache.length == ids.shape[1]


@pytest.mark.parametrize("family", ["gpt2", "llama", "mistral"])
def test_several_new_tokens_after_a_cached_past_see_it_causally(family, tmp_path):
    # No padding and no window: the case where SDPA's own causal flag would be wrong (it
    # aligns the triangle top-left, hiding the cached past), so chunked prefill and
    # speculative-style multi-token steps must build the mask themselves.
    hf_model = {
        "gpt2": lambda: transformers.GPT2LMHeadModel(
            transformers.GPT2Config(vocab_size=101, n_embd=48, n_layer=2, n_head=4, n_positions=64)
        ),
        "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL_LLAMA)),
        "mistral": lambda: transformers.MistralForCausalLM(
            transformers.MistralConfig(**SMALL_LLAMA, sliding_window=None)
        ),
    }[family]()
    _randomised(hf_model).save_pretrained(tmp_path)
    model_class = {
        "gpt2": GPT2LMHeadModel,
        "llama": LlamaForCausalLM,
        "mistral": MistralForCausalLM,
    }[family]
    model = model_class.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 101, (2, 13), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(2, capacity=16)
        chunks = [
            model(ids[:, a:b], past_key_values=cache).logits for a, b in ((0, 4), (4, 9), (9, 13))
        ]
    assert (torch.cat(chunks, dim=1) - full).abs().max().item() < TOLERANCE


def test_labels_give_the_shifted_cross_entropy_hf_computes(tmp_path):
    hf_model = _randomised(transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL_LLAMA)))
    hf_model.save_pretrained(tmp_path)
    model = LlamaForCausalLM.from_pretrained(tmp_path)
    ids = torch.randint(0, SMALL_LLAMA["vocab_size"], (2, 8))
    labels = ids.clone()
    labels[0, :3] = -100
    with torch.no_grad():
        want = hf_model(ids, labels=labels).loss
        got = model(ids, labels=labels).loss
    assert abs(want.item() - got.item()) < 1e-5


def test_a_checkpoint_missing_a_tensor_names_it(tmp_path):
    from safetensors.torch import load_file, save_file

    transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL_LLAMA)).save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        LlamaForCausalLM.from_pretrained(tmp_path)


def test_unsupported_settings_are_config_errors_naming_the_key(tmp_path):
    config = transformers.LlamaConfig(**SMALL_LLAMA).to_dict()
    for key, value, pattern in [
        ("rope_parameters", {"rope_type": "longrope", "rope_theta": 1e4}, "rope_scaling"),
        ("hidden_act", "mish", "hidden_act"),
        ("num_key_value_heads", 4, "num_key_value_heads"),
    ]:
        with pytest.raises(ConfigError, match=pattern):
            LlamaForCausalLM.config_class.from_dict({**config, key: value})
    with pytest.raises(ConfigError, match="model_type"):
        LlamaForCausalLM.config_class.from_dict({**config, "model_type": "qwen2"})


def test_bad_inputs_are_input_errors(tmp_path):
    model = LlamaForCausalLM(LlamaForCausalLM.config_class.from_dict(SMALL_LLAMA)).eval()
    with pytest.raises(InputError, match="outside"):
        model(torch.tensor([[1, 2, 500]]))
    with pytest.raises(InputError, match="attention_mask"):
        model(torch.tensor([[1, 2, 3]]), attention_mask=torch.ones(1, 2, dtype=torch.long))
    with pytest.raises(InputError, match="integer"):
        model(torch.rand(1, 3))


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sequence_classification_reads_the_last_real_token_like_hf(family, tmp_path):
    if family == "gpt2":
        config = transformers.GPT2Config(**{**GPT2_SMALL, "pad_token_id": 0}, num_labels=3)
        hf_model = _randomised(transformers.GPT2ForSequenceClassification(config))
        septet_class, vocab = GPT2ForSequenceClassification, GPT2_SMALL["vocab_size"]
    else:
        config = transformers.LlamaConfig(**SMALL_LLAMA, pad_token_id=0, num_labels=3)
        hf_model = _randomised(transformers.LlamaForSequenceClassification(config))
        septet_class, vocab = LlamaForSequenceClassification, SMALL_LLAMA["vocab_size"]
    hf_model.save_pretrained(tmp_path)
    model = septet_class.from_pretrained(tmp_path)
    ids = torch.randint(1, vocab, (3, 10), generator=torch.Generator().manual_seed(4))
    ids[1, 6:] = 0  # right padding: the score is read at position 5
    mask = (ids != 0).long()
    labels = torch.tensor([0, 2, 1])
    with torch.no_grad():
        want = hf_model(ids, attention_mask=mask, labels=labels)
        got = model(ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.logits, want.logits, atol=TOLERANCE, rtol=0)
    assert abs(got.loss.item() - want.loss.item()) < 1e-5
