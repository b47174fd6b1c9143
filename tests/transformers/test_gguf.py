"""GGUF: dequantisers against the gguf package's own, the llama.cpp Q/K permutation undone on a
file written like llama.cpp's converter writes it, and the real SmolLM2 GGUF against HF
transformers' own GGUF loading (logits and greedy tokens)."""

from __future__ import annotations

import gguf
import gguf.quants
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import transformers
from septet.errors import CheckpointError, InputError
from septet.transformers.bundled import smollm2_gguf_path
from septet.transformers.generation import generate
from septet.transformers.gguf import (
    dequantize,
    read_gguf_checkpoint,
    read_gguf_tokenizer_metadata,
)
from septet.transformers.llama import LlamaForCausalLM
from septet.transformers.tokenizer import Tokenizer

# Types the gguf package can both quantise and dequantise (the reference for ours).
ROUND_TRIP_TYPES = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


@settings(max_examples=25, deadline=None)
@given(
    type_name=st.sampled_from(ROUND_TRIP_TYPES),
    values=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.sampled_from([32, 64, 256])),
        elements=st.floats(-1e3, 1e3, width=32),
    ),
)
def test_dequantisers_equal_the_gguf_package(type_name, values):
    qtype = gguf.GGMLQuantizationType[type_name]
    raw = gguf.quants.quantize(values, qtype)
    expected = gguf.quants.dequantize(raw, qtype)
    got = dequantize(raw, type_name, values.shape)
    np.testing.assert_array_equal(got, expected.astype(np.float32))


@pytest.mark.parametrize("type_name", ["Q4_K", "Q6_K"])
def test_k_quant_dequantisers_equal_the_gguf_package(type_name):
    """The gguf package cannot quantise K-types; random blocks with sane f16 scales do."""
    qtype = gguf.GGMLQuantizationType[type_name]
    block_values, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 256, size=(12, block_bytes), dtype=np.uint8)
    scales = rng.uniform(0.001, 0.1, size=(12, 2)).astype(np.float16).view(np.uint8)
    if type_name == "Q4_K":
        blocks[:, 0:4] = scales  # d and dmin lead the block
    else:
        blocks[:, 208:210] = scales[:, :2]  # d closes the block
    raw = blocks.reshape(3, 4 * block_bytes)
    expected = gguf.quants.dequantize(raw, qtype)
    got = dequantize(raw, type_name, (3, 4 * block_values))
    np.testing.assert_array_equal(got, expected)


def test_a_damaged_tensor_is_a_checkpoint_error():
    with pytest.raises(CheckpointError, match="damaged"):
        dequantize(np.zeros(33, dtype=np.uint8), "Q8_0", (32,))


# ------------------------------------------------------------------------------------------
# A GGUF file written the way llama.cpp's convert_hf_to_gguf.py writes a Llama
# ------------------------------------------------------------------------------------------


def _llama_cpp_permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: HF rotate-half rows -> interleaved pairs."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _write_llama_gguf(model: transformers.LlamaForCausalLM, path, quantized: str) -> None:
    config = model.config
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    names = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for name, tensor in model.state_dict().items():
        values = tensor.numpy().astype(np.float32)
        if name == "model.embed_tokens.weight":
            gguf_name = "token_embd.weight"
        elif name == "model.norm.weight":
            gguf_name = "output_norm.weight"
        elif name == "lm_head.weight":
            gguf_name = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            module, _, kind = rest.rpartition(".")
            gguf_name = f"blk.{layer}.{names[module]}.{kind}"
            if module == "self_attn.q_proj":
                values = _llama_cpp_permute(values, config.num_attention_heads)
            elif module == "self_attn.k_proj":
                values = _llama_cpp_permute(values, config.num_key_value_heads)
        if values.ndim == 2 and quantized != "F32":
            qtype = gguf.GGMLQuantizationType[quantized]
            writer.add_tensor(gguf_name, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name, values)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny_hf_llama():
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_theta=10000.0,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    return model


@pytest.mark.parametrize(("quantized", "tolerance"), [("F32", 1e-5), ("Q8_0", 0.05)])
def test_a_llama_cpp_style_file_loads_with_rope_rows_unpermuted(
    tiny_hf_llama, tmp_path, quantized, tolerance
):
    path = tmp_path / f"tiny-{quantized}.gguf"
    _write_llama_gguf(tiny_hf_llama, path, quantized)
    config, state = read_gguf_checkpoint(path)
    assert config["num_key_value_heads"] == 2 and config["tie_word_embeddings"] is False
    if quantized == "F32":
        for name, tensor in tiny_hf_llama.state_dict().items():
            torch.testing.assert_close(state[name], tensor, atol=0, rtol=0, msg=name)
    model = LlamaForCausalLM.from_pretrained(path)
    ids = torch.randint(0, 96, (2, 12))
    with torch.no_grad():
        error = (model(ids).logits - tiny_hf_llama(ids).logits).abs().max().item()
    assert error < tolerance


def test_files_that_are_not_gguf_or_not_supported_fail_clearly(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(CheckpointError, match="GGUF"):
        read_gguf_checkpoint(bogus)
    with pytest.raises(InputError, match="does not exist"):
        read_gguf_checkpoint(tmp_path / "missing.gguf")
    writer = gguf.GGUFWriter(tmp_path / "bert.gguf", "bert")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(CheckpointError, match="architecture 'bert'"):
        read_gguf_checkpoint(tmp_path / "bert.gguf")


# ------------------------------------------------------------------------------------------
# The real SmolLM2-135M-Instruct Q4_1 file against HF transformers' GGUF loader
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2_pair():
    path = smollm2_gguf_path()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name
    ).eval()
    return hf_model, LlamaForCausalLM.from_pretrained(path), Tokenizer.from_gguf(path)


def test_smollm2_logits_match_hf_gguf_loading_on_a_padded_batch(smollm2_pair):
    hf_model, model, tokenizer = smollm2_pair
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}]),
        "def fibonacci(n):",
        "Les feuilles d'automne tombent doucement sur le sol mouillé, et",
    ]
    batch = tokenizer(prompts, padding=True, padding_side="left")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    with torch.no_grad():
        expected = hf_model(ids, attention_mask=mask, position_ids=positions).logits
        got = model(ids, attention_mask=mask).logits
    error = (expected - got)[mask.bool()].abs().max().item()
    assert error < 1e-3


def test_smollm2_greedy_32_tokens_match_hf_generate(smollm2_pair):
    hf_model, model, tokenizer = smollm2_pair
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
    )
    ids = tokenizer(prompt)["input_ids"]
    expected = hf_model.generate(ids, max_new_tokens=32, do_sample=False)
    got = generate(model, ids, max_new_tokens=32)
    assert got.shape[1] - ids.shape[1] == 32  # the story is longer than 32 tokens
    assert got.tolist() == expected.tolist()


def test_tokenizer_metadata_describes_the_vocabulary():
    metadata = read_gguf_tokenizer_metadata(smollm2_gguf_path())
    assert metadata["model"] == "gpt2"
    assert len(metadata["tokens"]) == 49152 == len(metadata["token_type"])
    assert len(metadata["merges"]) > 40000
    assert metadata["tokens"][metadata["eos_token_id"]] == "<|im_end|>"
    assert "<|im_start|>" in metadata["chat_template"]
