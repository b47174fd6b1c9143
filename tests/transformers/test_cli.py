"""`septet transformers ...` on the real bundled models (and tiny HF-built ones where only the
plumbing is under test): embed, generate, fill-mask, finetune + classify, convert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from septet.cli import app
from septet.errors import InputError
from septet.transformers.bundled import minilm_path

from .tiny_checkpoints import write_tiny_bert

DATA = Path(__file__).parent / "data"
# One torch thread: on a shared CPU, two spinning threads make these small runs several times
# slower (the real MiniLM fine-tune: 31 s instead of 195 s under load).
pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()


def septet(*args: str) -> str:
    """Run ``septet <args>`` in this process; fail with its output if it did not exit 0."""
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_embed_ranks_texts_by_meaning():
    out = septet(
        "transformers",
        "embed",
        "--query",
        "How do I care for houseplants?",
        "The stock market fell sharply today.",
        "Water your indoor plants once a week.",
        "The team won the championship.",
    )
    lines = [line.split("\t") for line in out.strip().splitlines()]
    assert lines[0][1] == "Water your indoor plants once a week."
    scores = [float(score) for score, _ in lines]
    assert scores == sorted(scores, reverse=True)


def test_embed_writes_the_same_vectors_as_the_api(tmp_path):
    from septet.transformers.embeddings import SentenceEmbedder

    texts = ["first sentence", "a second, longer sentence with ünïcode"]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n\n")
    septet(
        "transformers",
        "embed",
        "--file",
        str(tmp_path / "texts.txt"),
        "-o",
        str(tmp_path / "v.npy"),
    )
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.shape == (2, 384)
    expected = SentenceEmbedder.from_pretrained(minilm_path()).encode(texts).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    rows = [json.loads(line) for line in septet("transformers", "embed", *texts).splitlines()]
    assert [row["text"] for row in rows] == texts
    np.testing.assert_allclose([row["embedding"] for row in rows], expected, atol=1e-5)


def test_generate_answers_through_the_chat_template():
    out = septet(
        "transformers", "generate", "What is the capital of France?", "-n", "12", "--no-stream"
    )
    assert "Paris" in out


def test_fill_mask_matches_hf(tmp_path, hf):
    folder = write_tiny_bert(tmp_path / "mlm", head="masked_lm")
    text = "The capital of France is [MASK]."
    rows = [
        json.loads(line)
        for line in septet("transformers", "fill-mask", text, "-m", str(folder), "-k", "3")
        .strip()
        .splitlines()
    ]
    tokenizer = hf.AutoTokenizer.from_pretrained(str(folder))
    model = hf.AutoModelForMaskedLM.from_pretrained(str(folder))
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    position = int((inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero())
    top = logits[position].softmax(-1).topk(3)
    assert len(rows) == 1 and rows[0]["position"] == position
    assert [c["token_id"] for c in rows[0]["candidates"]] == top.indices.tolist()
    np.testing.assert_allclose(
        [c["score"] for c in rows[0]["candidates"]], top.values.tolist(), atol=1e-5
    )


def test_fill_mask_refuses_a_model_without_a_masked_lm_head():
    result = runner.invoke(app, ["transformers", "fill-mask", "a [MASK].", "-m", "minilm"])
    assert isinstance(result.exception, InputError)
    assert "no masked-LM head (architectures: BertModel)" in str(result.exception)


def test_finetune_then_classify(tmp_path):
    base = write_tiny_bert(tmp_path / "tiny", head="base")
    out = septet(
        "transformers",
        "finetune",
        "--model",
        str(base),
        "--train",
        str(DATA / "debtags_roles_train.jsonl"),
        "--eval",
        str(DATA / "debtags_roles_dev.jsonl"),
        "--output",
        str(tmp_path / "clf"),
        "--epochs",
        "1",
        "--lr",
        "1e-3",
        "--max-length",
        "32",
    )
    assert "single-label classifier over 3 labels in 3 steps" in out
    assert (tmp_path / "clf" / "model.safetensors").is_file()
    lines = septet(
        "transformers", "classify", str(tmp_path / "clf"), "a shared library", "a game", "-k", "2"
    ).splitlines()
    rows = [json.loads(line) for line in lines]
    assert [row["text"] for row in rows] == ["a shared library", "a game"]
    for row in rows:
        assert len(row["labels"]) == 2
        assert {label["label"] for label in row["labels"]} <= {
            "role::documentation",
            "role::program",
            "role::shared-lib",
        }


def test_convert_bin_to_safetensors_keeps_outputs(tmp_path, hf):
    source = write_tiny_bert(tmp_path / "legacy", head="masked_lm", bin_format=True)
    septet("transformers", "convert", str(source), str(tmp_path / "converted"))
    assert (tmp_path / "converted" / "model.safetensors").is_file()
    assert (tmp_path / "converted" / "tokenizer.json").is_file()
    original = hf.AutoModelForMaskedLM.from_pretrained(str(source))
    converted = hf.AutoModelForMaskedLM.from_pretrained(str(tmp_path / "converted"))
    ids = torch.tensor([[101, 7592, 2088, 103, 102]])
    with torch.no_grad():
        torch.testing.assert_close(converted(ids).logits, original(ids).logits)


def test_convert_gguf_to_a_folder_hf_loads(tmp_path, hf):
    from septet.transformers.auto import AutoModelForCausalLM

    out = tmp_path / "smollm2"
    septet("transformers", "convert", "smollm2", str(out), "--dtype", "bfloat16")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["torch_dtype"] == "bfloat16"
    tokenizer = hf.AutoTokenizer.from_pretrained(str(out))
    assert tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    ).endswith("<|im_start|>assistant\n")
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    # HF reads the converted folder as septet does (septet's GGUF loading itself is checked
    # against HF's in test_decoders.py).
    reference = hf.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    ours = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(
            reference(ids).logits, ours(ids).logits.float(), atol=1e-4, rtol=1e-4
        )


def test_errors_are_one_line_and_exit_2(tmp_path):
    # Through the real console entry point, as a user runs it.
    missing = tmp_path / "texts.txt"
    result = subprocess.run(
        [sys.executable, "-m", "septet", "transformers", "classify", "clf", "--file", str(missing)],
        capture_output=True,
        text=True,
        env={**os.environ, "SEPTET_QUIET": "1"},
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr == f"error: no file at {missing}\n"
