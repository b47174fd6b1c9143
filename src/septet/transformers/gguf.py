"""GGUF files (llama.cpp's format) read as Hugging Face checkpoints.

``read_gguf_checkpoint`` returns the HF ``config.json`` dict and a state dict in HF tensor names,
so a GGUF file loads through the same path as a safetensors folder. Quantised tensors are
dequantised here, vectorised in numpy, one block layout per function (the layouts are those of
ggml's ``ggml-common.h``). Types without a function here fall back to the ``gguf`` package's own
dequantiser when it has one.

llama.cpp stores the query and key projections of Llama-family models with their rows permuted
(its RoPE rotates adjacent pairs, HF's rotates the two halves of each head); loading undoes that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from septet.errors import CheckpointError, InputError, MissingDependencyError

# --------------------------------------------------------------------------------------------
# Dequantisers: each takes the raw bytes of whole blocks, shape (n_blocks, bytes_per_block),
# and returns float32 values, shape (n_blocks, values_per_block).
# --------------------------------------------------------------------------------------------


def _f16(blocks: np.ndarray, start: int) -> np.ndarray:
    """The float16 at byte ``start`` of every block, as a (n_blocks, 1) float32 column."""
    return blocks[:, start : start + 2].copy().view(np.float16).astype(np.float32)


def _nibbles(packed: np.ndarray) -> np.ndarray:
    """ggml's 4-bit packing: byte j holds element j (low nibble) and element j + n (high)."""
    return np.concatenate([packed & 0x0F, packed >> 4], axis=1)


def _dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    # block: d (f16) | 32 x int8
    return _f16(blocks, 0) * blocks[:, 2:].view(np.int8).astype(np.float32)


def _dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    # block: d (f16) | 16 bytes of nibbles; value = (q - 8) * d
    q = _nibbles(blocks[:, 2:]).astype(np.int8) - 8
    return _f16(blocks, 0) * q.astype(np.float32)


def _dequantize_q4_1(blocks: np.ndarray) -> np.ndarray:
    # block: d (f16) | m (f16) | 16 bytes of nibbles; value = q * d + m
    q = _nibbles(blocks[:, 4:]).astype(np.float32)
    return _f16(blocks, 0) * q + _f16(blocks, 2)


def _fifth_bits(qh_bytes: np.ndarray) -> np.ndarray:
    """The 32 high bits of a Q5 block (a little-endian uint32) as 0/16 per element."""
    qh = qh_bytes.copy().view("<u4")  # (n, 1)
    return (((qh >> np.arange(32, dtype=np.uint32)) & 1) << 4).astype(np.uint8)


def _dequantize_q5_0(blocks: np.ndarray) -> np.ndarray:
    # block: d (f16) | qh (u32) | 16 bytes of nibbles; value = ((q | h << 4) - 16) * d
    q = (_nibbles(blocks[:, 6:]) | _fifth_bits(blocks[:, 2:6])).astype(np.int8) - 16
    return _f16(blocks, 0) * q.astype(np.float32)


def _dequantize_q5_1(blocks: np.ndarray) -> np.ndarray:
    # block: d (f16) | m (f16) | qh (u32) | 16 bytes of nibbles; value = (q | h << 4) * d + m
    q = (_nibbles(blocks[:, 8:]) | _fifth_bits(blocks[:, 4:8])).astype(np.float32)
    return _f16(blocks, 0) * q + _f16(blocks, 2)


def _q4k_scales_mins(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8 six-bit scales and 8 six-bit mins packed in 12 bytes of a Q4_K/Q5_K block."""
    s = packed.astype(np.uint8)
    low_scales, low_mins, high = s[:, 0:4], s[:, 4:8], s[:, 8:12]
    scales = np.concatenate([low_scales & 63, (high & 0x0F) | ((low_scales >> 6) << 4)], axis=1)
    mins = np.concatenate([low_mins & 63, (high >> 4) | ((low_mins >> 6) << 4)], axis=1)
    return scales.astype(np.float32), mins.astype(np.float32)


def _dequantize_q4_k(blocks: np.ndarray) -> np.ndarray:
    # super-block of 256: d (f16) | dmin (f16) | 12 bytes scales/mins | 128 bytes of nibbles.
    # Sub-block 2i uses the low nibbles of bytes 32i..32i+31, sub-block 2i+1 their high nibbles.
    n = blocks.shape[0]
    scales, mins = _q4k_scales_mins(blocks[:, 4:16])
    qs = blocks[:, 16:].reshape(n, 4, 1, 32)
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, 8, 32).astype(np.float32)
    d, dmin = _f16(blocks, 0), _f16(blocks, 2)
    values = (d * scales)[:, :, None] * q - (dmin * mins)[:, :, None]
    return values.reshape(n, 256)


def _dequantize_q6_k(blocks: np.ndarray) -> np.ndarray:
    # super-block of 256: ql (128 bytes, low 4 bits) | qh (64 bytes, high 2 bits) |
    # 16 int8 scales (one per 16 values) | d (f16). Two halves of 128 values each.
    n = blocks.shape[0]
    ql = blocks[:, 0:128].reshape(n, 2, 64)
    qh = blocks[:, 128:192].reshape(n, 2, 1, 32)
    scales = blocks[:, 192:208].view(np.int8).astype(np.float32).reshape(n, 16)
    d = _f16(blocks, 208)
    low = np.concatenate([ql[:, :, :32] & 0x0F, ql[:, :, 32:] & 0x0F, ql[:, :, :32] >> 4,
                          ql[:, :, 32:] >> 4], axis=2).reshape(n, 2, 4, 32)  # fmt: skip
    high = (qh >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4, 1)) & 3
    q = ((low | (high << 4)).astype(np.int8) - 32).astype(np.float32).reshape(n, 16, 16)
    return ((d * scales)[:, :, None] * q).reshape(n, 256)


def _dequantize_bf16(values: np.ndarray) -> np.ndarray:
    return (values.view(np.uint16).astype(np.uint32) << 16).view(np.float32)


# type name -> (values per block, bytes per block, function over blocks)
_BLOCK_DEQUANTIZERS: dict[str, tuple[int, int, Callable[[np.ndarray], np.ndarray]]] = {
    "Q8_0": (32, 34, _dequantize_q8_0),
    "Q4_0": (32, 18, _dequantize_q4_0),
    "Q4_1": (32, 20, _dequantize_q4_1),
    "Q5_0": (32, 22, _dequantize_q5_0),
    "Q5_1": (32, 24, _dequantize_q5_1),
    "Q4_K": (256, 144, _dequantize_q4_k),
    "Q6_K": (256, 210, _dequantize_q6_k),
}

SUPPORTED_TYPES = ("F32", "F16", "BF16", *_BLOCK_DEQUANTIZERS)


def dequantize(raw: np.ndarray, type_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values of a GGUF tensor of type ``type_name`` stored as ``raw``, in numpy
    ``shape`` (ggml's dimension order reversed, so rows are the last-but-one axis)."""
    count = int(np.prod(shape)) if shape else 1
    if type_name == "F32":
        out = np.asarray(raw).view(np.float32)
    elif type_name == "F16":
        out = np.asarray(raw).view(np.float16).astype(np.float32)
    elif type_name == "BF16":
        out = _dequantize_bf16(np.asarray(raw))
    elif type_name in _BLOCK_DEQUANTIZERS:
        block_values, block_bytes, function = _BLOCK_DEQUANTIZERS[type_name]
        data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
        if data.size * block_values != count * block_bytes:
            raise CheckpointError(
                f"GGUF tensor of type {type_name} holds {data.size} bytes, which is not "
                f"{count} values in blocks of {block_values}; the file is damaged"
            )
        out = _in_chunks(function, data.reshape(-1, block_bytes))
    else:
        out = _dequantize_with_gguf_package(raw, type_name)
    out = out.reshape(shape)
    # F32 tensors are views of the read-only file mapping: copy them so the model owns them.
    return np.array(out, dtype=np.float32, order="C", copy=not out.flags.writeable)


def _in_chunks(function: Callable[[np.ndarray], np.ndarray], blocks: np.ndarray) -> np.ndarray:
    """Apply ``function`` to ~64k blocks at a time so the temporaries stay small in cache."""
    step = 1 << 16
    if blocks.shape[0] <= step:
        return function(blocks)
    return np.concatenate([function(blocks[i : i + step]) for i in range(0, len(blocks), step)])


def _dequantize_with_gguf_package(raw: np.ndarray, type_name: str) -> np.ndarray:
    import gguf.quants

    try:
        qtype = gguf.GGMLQuantizationType[type_name]
        return gguf.quants.dequantize(np.asarray(raw), qtype)
    except (KeyError, NotImplementedError) as error:
        raise CheckpointError(
            f"GGUF tensor type {type_name} cannot be dequantised (supported: "
            f"{', '.join(SUPPORTED_TYPES)}); re-quantise the model to one of those with "
            "llama.cpp's llama-quantize"
        ) from error


# --------------------------------------------------------------------------------------------
# Reading a file
# --------------------------------------------------------------------------------------------


def _open_reader(path: str | Path) -> Any:
    try:
        import gguf  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError("gguf", "transformers") from error
    path = Path(path)
    if not path.is_file():
        raise InputError(f"GGUF file {str(path)!r} does not exist")
    stat = path.stat()
    return _cached_reader(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=1)
def _cached_reader(path: str, mtime_ns: int, size: int) -> Any:
    """The parsed header of the file (its tensors are a read-only memory map). Parsing a
    large vocabulary takes seconds, and loading a model reads the same file twice (weights,
    then tokenizer), so the last file stays parsed; a changed file is parsed again."""
    import gguf

    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError) as error:
        raise CheckpointError(f"{path!r} is not a readable GGUF file: {error}") from error


def _field_value(field: Any) -> Any:
    return field.contents()


def read_gguf_metadata(path: str | Path, *, with_vocabulary: bool = False) -> dict[str, Any]:
    """Every key/value of a GGUF file's header; the large tokenizer arrays (tokens, merges,
    scores) only when ``with_vocabulary``."""
    return _metadata(_open_reader(path), with_vocabulary)


def _metadata(reader: Any, with_vocabulary: bool = False) -> dict[str, Any]:
    import gguf

    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        is_array = bool(field.types) and field.types[0] == gguf.GGUFValueType.ARRAY
        if key.startswith("GGUF.") or (
            is_array and key.startswith("tokenizer.") and not with_vocabulary
        ):
            continue
        out[key] = _field_value(field)
    return out


def read_gguf_tokenizer_metadata(path: str | Path) -> dict[str, Any]:
    """The tokenizer stored in a GGUF file: ``model`` ("gpt2" byte-level BPE, "llama"
    sentencepiece, ...), ``pre``, ``tokens``, ``token_type``, ``merges``, ``scores``,
    ``bos_token_id``/``eos_token_id``/``unknown_token_id``/``padding_token_id``,
    ``add_bos_token``/``add_eos_token``/``add_space_prefix`` and ``chat_template``, each present
    only when the file has it (keys are the GGUF names without ``tokenizer.ggml.``)."""
    reader = _open_reader(path)
    out: dict[str, Any] = {}
    for key, field in reader.fields.items():
        if key.startswith("tokenizer.ggml."):
            out[key.removeprefix("tokenizer.ggml.")] = _field_value(field)
        elif key == "tokenizer.chat_template":
            out["chat_template"] = _field_value(field)
    if "tokens" not in out:
        raise CheckpointError(
            f"GGUF file {str(path)!r} has no tokenizer (no tokenizer.ggml.tokens)"
        )
    return out


def read_gguf_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(HF config.json dict, state dict in HF names with float32 torch tensors) of a GGUF file
    of a supported architecture (llama, mistral, qwen2, gpt2)."""
    import torch

    reader = _open_reader(path)
    metadata = _metadata(reader)
    arch = metadata.get("general.architecture")
    if arch not in _ARCHITECTURES:
        raise CheckpointError(
            f"GGUF architecture {arch!r} is not supported (supported: {', '.join(_ARCHITECTURES)})"
        )
    tensors = {t.name: t for t in reader.tensors}
    config = _ARCHITECTURES[arch].config(metadata, tensors)
    state: dict[str, Any] = {}
    for name, tensor in tensors.items():
        shape = tuple(int(n) for n in reversed(tensor.shape.tolist()))
        values = dequantize(tensor.data, tensor.tensor_type.name, shape)
        for hf_name, hf_values in _ARCHITECTURES[arch].convert(name, values, config):
            state[hf_name] = torch.from_numpy(hf_values)
    return config, state


# --------------------------------------------------------------------------------------------
# Architectures: GGUF metadata -> HF config, GGUF tensor -> HF tensor(s)
# --------------------------------------------------------------------------------------------


def _require(metadata: dict[str, Any], key: str) -> Any:
    if key not in metadata:
        raise CheckpointError(f"GGUF metadata lacks {key!r}; the file is incomplete")
    return metadata[key]


def _vocab_size(metadata: dict[str, Any], arch: str, tensors: dict[str, Any]) -> int:
    if f"{arch}.vocab_size" in metadata:
        return int(metadata[f"{arch}.vocab_size"])
    return int(tensors["token_embd.weight"].shape[-1])


class _Llama:
    """llama (incl. Mistral, which llama.cpp writes as "llama") and qwen2."""

    def __init__(self, arch: str):
        self.arch = arch

    def config(self, metadata: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
        a = self.arch
        heads = int(_require(metadata, f"{a}.attention.head_count"))
        hidden = int(_require(metadata, f"{a}.embedding_length"))
        config: dict[str, Any] = {
            "architectures": ["Qwen2ForCausalLM" if a == "qwen2" else "LlamaForCausalLM"],
            "model_type": a,
            "vocab_size": _vocab_size(metadata, a, tensors),
            "hidden_size": hidden,
            "intermediate_size": int(_require(metadata, f"{a}.feed_forward_length")),
            "num_hidden_layers": int(_require(metadata, f"{a}.block_count")),
            "num_attention_heads": heads,
            "num_key_value_heads": int(metadata.get(f"{a}.attention.head_count_kv", heads)),
            "head_dim": int(metadata.get(f"{a}.attention.key_length", hidden // heads)),
            "rms_norm_eps": float(metadata.get(f"{a}.attention.layer_norm_rms_epsilon", 1e-6)),
            "rope_theta": float(metadata.get(f"{a}.rope.freq_base", 10000.0)),
            "max_position_embeddings": int(metadata.get(f"{a}.context_length", 2048)),
            "hidden_act": "silu",
            "tie_word_embeddings": "output.weight" not in tensors,
            "attention_bias": "blk.0.attn_q.bias" in tensors,
        }
        scaling = metadata.get(f"{a}.rope.scaling.type")
        if scaling and scaling != "none":
            rope_scaling: dict[str, Any] = {
                "rope_type": scaling,
                "factor": float(_require(metadata, f"{a}.rope.scaling.factor")),
            }
            original = metadata.get(f"{a}.rope.scaling.original_context_length")
            if original is not None:
                rope_scaling["original_max_position_embeddings"] = int(original)
            config["rope_scaling"] = rope_scaling
        if f"{a}.attention.sliding_window" in metadata:
            config["sliding_window"] = int(metadata[f"{a}.attention.sliding_window"])
        for key in ("bos_token_id", "eos_token_id", "padding_token_id"):
            value = metadata.get(f"tokenizer.ggml.{key}")
            if value is not None:
                config[key.replace("padding", "pad")] = int(value)
        return config

    _BLOCK_NAMES: ClassVar[dict[str, str]] = {
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    }
    _TOP_NAMES: ClassVar[dict[str, str]] = {
        "token_embd.weight": "model.embed_tokens.weight",
        "output_norm.weight": "model.norm.weight",
        "output.weight": "lm_head.weight",
    }

    def convert(
        self, name: str, values: np.ndarray, config: dict[str, Any]
    ) -> list[tuple[str, np.ndarray]]:
        if name in self._TOP_NAMES:
            return [(self._TOP_NAMES[name], values)]
        if name == "rope_freqs.weight":
            return []  # llama3 frequency factors; recomputed from config["rope_scaling"]
        parts = name.split(".")
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in self._BLOCK_NAMES:
            raise CheckpointError(f"GGUF tensor {name!r} has no place in a {self.arch} model")
        kind = parts[2]
        # llama.cpp's converter permuted Q and K rows for "llama" (interleaved RoPE); qwen2
        # already uses HF's rotate-half layout and was stored as is.
        if self.arch == "llama" and kind in ("attn_q", "attn_k"):
            heads = config["num_attention_heads" if kind == "attn_q" else "num_key_value_heads"]
            values = _unpermute_rope_rows(values, heads)
        return [(f"model.layers.{parts[1]}.{self._BLOCK_NAMES[kind]}.{parts[3]}", values)]


def _unpermute_rope_rows(values: np.ndarray, heads: int) -> np.ndarray:
    """Invert llama.cpp's ``permute``: per head it interleaved the two halves of the rows
    (rows 0, d/2, 1, d/2+1, ...); HF keeps them as halves."""
    rows = values.shape[0]
    head_rows = rows // heads
    grouped = values.reshape(heads, head_rows // 2, 2, *values.shape[1:])
    return np.ascontiguousarray(grouped.swapaxes(1, 2).reshape(values.shape))


class _GPT2:
    """gpt2: HF keeps Conv1D weights as (in, out), GGUF as (out, in)."""

    def config(self, metadata: dict[str, Any], tensors: dict[str, Any]) -> dict[str, Any]:
        config = {
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": _vocab_size(metadata, "gpt2", tensors),
            "n_embd": int(_require(metadata, "gpt2.embedding_length")),
            "n_layer": int(_require(metadata, "gpt2.block_count")),
            "n_head": int(_require(metadata, "gpt2.attention.head_count")),
            "n_positions": int(metadata.get("gpt2.context_length", 1024)),
            "n_inner": int(metadata.get("gpt2.feed_forward_length", 0)) or None,
            "layer_norm_epsilon": float(metadata.get("gpt2.attention.layer_norm_epsilon", 1e-5)),
            "tie_word_embeddings": "output.weight" not in tensors,
        }
        for key in ("bos_token_id", "eos_token_id"):
            value = metadata.get(f"tokenizer.ggml.{key}")
            if value is not None:
                config[key] = int(value)
        return config

    _BLOCK_NAMES: ClassVar[dict[str, str]] = {
        "attn_norm": "ln_1",
        "ffn_norm": "ln_2",
        "attn_qkv": "attn.c_attn",
        "attn_output": "attn.c_proj",
        "ffn_up": "mlp.c_fc",
        "ffn_down": "mlp.c_proj",
    }
    _TOP_NAMES: ClassVar[dict[str, str]] = {
        "token_embd.weight": "transformer.wte.weight",
        "position_embd.weight": "transformer.wpe.weight",
        "output_norm.weight": "transformer.ln_f.weight",
        "output_norm.bias": "transformer.ln_f.bias",
        "output.weight": "lm_head.weight",
    }

    def convert(
        self, name: str, values: np.ndarray, config: dict[str, Any]
    ) -> list[tuple[str, np.ndarray]]:
        if name in self._TOP_NAMES:
            return [(self._TOP_NAMES[name], values)]
        parts = name.split(".")
        if len(parts) != 4 or parts[0] != "blk" or parts[2] not in self._BLOCK_NAMES:
            raise CheckpointError(f"GGUF tensor {name!r} has no place in a gpt2 model")
        target = self._BLOCK_NAMES[parts[2]]
        if parts[3] == "weight" and not target.startswith("ln_"):
            values = np.ascontiguousarray(values.T)
        return [(f"transformer.h.{parts[1]}.{target}.{parts[3]}", values)]


_ARCHITECTURES: dict[str, Any] = {
    "llama": _Llama("llama"),
    "qwen2": _Llama("qwen2"),
    "gpt2": _GPT2(),
}
