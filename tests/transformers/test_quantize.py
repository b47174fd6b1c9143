"""Weight-only quantisation for decoding: packed layers approximate their float layers as
closely as their bit widths allow, quantised decoders still decode, and cannot be saved."""

from __future__ import annotations

import copy

import pytest
import torch

import transformers
from septet.errors import ConfigError
from septet.transformers.generation import generate
from septet.transformers.gpt2 import GPT2LMHeadModel
from septet.transformers.llama import Qwen2ForCausalLM
from septet.transformers.quantize import (
    PackedLinear,
    quantize_for_decoding,
    weight_bytes_per_token,
)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm()).item()


def test_int4_represents_asymmetric_4_bit_groups_up_to_bf16_scale_rounding():
    """A weight made of 4-bit groups (as GGUF Q4_1 stores them) keeps its integers; only the
    bf16 rounding of scale and zero point remains."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (96, 128), generator=generator).float()
    q[:, ::32] = 0  # every group spans the whole 0..15 range, as a Q4_1 block usually does
    q[:, 1::32] = 15
    scale = torch.rand(96, 4, 1, generator=generator).repeat_interleave(32, 1)[..., 0] * 0.01
    low = torch.randn(96, 4, 1, generator=generator).repeat_interleave(32, 1)[..., 0] * 0.01
    weight = q * scale + low
    x = torch.randn(1, 128, generator=generator)
    want = x @ weight.t()
    assert _relative_error(PackedLinear(weight, None, "int4")(x), want) < 4e-3


@pytest.mark.parametrize(("scheme", "limit"), [("int4", 0.1), ("int8", 0.01), ("bf16", 0.004)])
def test_packed_linear_approximates_a_float_linear(scheme, limit):
    generator = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(256, 80)
    with torch.no_grad():
        linear.weight.normal_(generator=generator)
        linear.bias.normal_(generator=generator)
    packed = PackedLinear(linear.weight, linear.bias, scheme)
    for rows in (1, 7, 40):  # a decoding step, a small batch, a prompt
        x = torch.randn(2, rows, 256, generator=generator)
        with torch.no_grad():
            assert _relative_error(packed(x), linear(x)) < limit


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory):
    config = transformers.Qwen2Config(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(2)
    hf_model = transformers.Qwen2ForCausalLM(config)
    with torch.no_grad():
        for param in hf_model.parameters():
            param.normal_(0, 0.1)
    folder = tmp_path_factory.mktemp("qwen2")
    hf_model.save_pretrained(folder)
    return Qwen2ForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize(
    ("weights", "error_limit", "min_agreement"),
    # Gaussian weights are the worst case for 4 bits (real ones have fewer outliers per group).
    [("int4", 0.15, 0.6), ("int8", 0.03, 0.85), ("bf16", 0.02, 0.9)],
)
def test_a_quantised_decoder_keeps_its_predictions(qwen2, weights, error_limit, min_agreement):
    quantised = quantize_for_decoding(copy.deepcopy(qwen2), weights, lm_head="bf16")
    assert weight_bytes_per_token(quantised) < weight_bytes_per_token(qwen2) / 1.9
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = qwen2(ids).logits
        got = quantised(ids).logits
    assert _relative_error(got, want) < error_limit
    agreement = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    assert agreement >= min_agreement
    # fused q/k/v and gate/up replace the separate projections
    attention = quantised.model.layers[0].self_attn
    assert isinstance(attention.qkv_proj, PackedLinear) and not hasattr(attention, "q_proj")
    assert generate(quantised, ids, max_new_tokens=5).shape == (2, 21)


def test_quantised_models_refuse_to_be_saved_and_bad_schemes_are_named(qwen2, tmp_path):
    quantised = quantize_for_decoding(copy.deepcopy(qwen2), "int8")
    with pytest.raises(ConfigError, match="cannot be saved"):
        quantised.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="int3"):
        quantize_for_decoding(copy.deepcopy(qwen2), "int3")


def test_gpt2_quantises_too(tmp_path):
    config = transformers.GPT2Config(vocab_size=64, n_embd=64, n_layer=2, n_head=4, n_positions=32)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    model = GPT2LMHeadModel.from_pretrained(tmp_path)
    quantised = quantize_for_decoding(copy.deepcopy(model), "int4")
    ids = torch.randint(0, 64, (1, 10))
    with torch.no_grad():
        assert _relative_error(quantised(ids).logits, model(ids).logits) < 0.1
