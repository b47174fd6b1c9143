"""transformers benchmark: septet beside HF transformers in one process, same torch threads.

1. SmolLM2-135M-Instruct (the bundled Q4_1 GGUF): prefill latency and greedy decode speed,
   batch 1, 128 new tokens. HF loads the GGUF its own way (dequantised to fp32); septet runs
   fp32 (the same weights, bit-identical logits) and weight-only quantised variants
   (``quantize_for_decoding``). Each precision's logit error against HF fp32 is measured on
   the decoding path itself: HF's greedy continuation is fed back token by token through the
   KV cache, and every step's logits are compared (max and mean absolute error, top-1
   agreement); the greedy continuations are compared token by token too.
2. The fraction of this machine's memory bandwidth decoding achieves: bandwidth measured here
   (a large tensor copy and a large read), bytes per token counted from the weights each step
   reads (plus the KV cache).
3. all-MiniLM-L6-v2 sentence embeddings (the bundled folder): texts of at least 128 tokens,
   cut to 128, batch 32, end to end (tokenise, encode, mean-pool, normalise): septet's
   SentenceEmbedder vs HF AutoTokenizer + AutoModel + the same pooling.

Timing: the systems alternate for ``--rounds`` rounds and the best round counts (the machine
is shared; the best is the least disturbed). ``python benchmarks/transformers/run.py
[--rounds 3] [--new-tokens 128] [--threads N]``.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import transformers
from septet.common.report import write_benchmark_results
from septet.transformers.bundled import minilm_path, smollm2_gguf_path
from septet.transformers.embeddings import SentenceEmbedder
from septet.transformers.generation import generate
from septet.transformers.llama import LlamaForCausalLM
from septet.transformers.quantize import quantize_for_decoding, weight_bytes_per_token
from septet.transformers.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
DEBTAGS = ROOT.parent / "shared" / "data" / "debtags" / "train.jsonl.gz"
PROMPT = (
    "You are given a short description of a lighthouse on a rocky coast. Describe, in a few "
    "paragraphs, how the keeper spends a stormy night: the lamp, the logbook, the radio, the "
    "ships that pass, and what the keeper thinks about when the storm finally calms at dawn."
)
# (name, weights of the transformer layers, of the LM head, activations as hi + lo bf16);
# weights None: plain fp32.
SEPTET_VARIANTS = [
    ("septet fp32", None, None, False),
    ("septet bf16", "bf16", "bf16", True),
    ("septet int4 + bf16 head", "int4", "bf16", True),
    ("septet int4 + bf16 head, bf16 activations", "int4", "bf16", False),
    ("septet int4 + int8 head, bf16 activations", "int4", "int8", False),
]


def _best(function: Any, rounds: int) -> tuple[float, float]:
    """(best, median) wall time of ``function`` over ``rounds`` calls."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


# ------------------------------------------------------------------------------------------
# Memory bandwidth
# ------------------------------------------------------------------------------------------


def measure_bandwidth(megabytes: int = 512, repeats: int = 5) -> dict[str, float]:
    """GB/s of a large copy (read + write counted) and of a large read (a sum)."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    target.copy_(source)
    copy_time, _ = _best(lambda: target.copy_(source), repeats)
    read_time, _ = _best(lambda: source.sum(), repeats)
    nbytes = source.numel() * 4
    return {
        "copy_gb_s": 2 * nbytes / copy_time / 1e9,
        "read_gb_s": nbytes / read_time / 1e9,
    }


# ------------------------------------------------------------------------------------------
# SmolLM2 decoding
# ------------------------------------------------------------------------------------------


def _kv_bytes_per_token(model: Any, context: int) -> int:
    config = model.config
    per_slot = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 4
    return per_slot * context


def _step_logits(model: Any, sequence: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """septet's logits for every continuation position, computed the way decoding computes
    them: the prompt in one pass, then one token at a time through the KV cache."""
    with torch.inference_mode():
        cache = model.new_cache(1, sequence.shape[1])
        first = model(sequence[:, :prompt_length], past_key_values=cache, logits_to_keep=1)
        rows = [first.logits[0, -1]]
        for t in range(prompt_length, sequence.shape[1] - 1):
            rows.append(model(sequence[:, t : t + 1], past_key_values=cache).logits[0, -1])
    return torch.stack(rows)


def _agreement(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading tokens two sequences share."""
    same = (a == b).tolist()
    return same.index(False) if False in same else len(same)


def bench_decoding(rounds: int, new_tokens: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    path = smollm2_gguf_path()
    tokenizer = Tokenizer.from_gguf(path)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}])
    ids = tokenizer(prompt)["input_ids"]
    prompt_length = ids.shape[1]

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name
    ).eval()
    base = LlamaForCausalLM.from_pretrained(path)
    systems: dict[str, Any] = {"HF transformers fp32": hf_model}
    for name, weights, head, exact in SEPTET_VARIANTS:
        if weights is None:
            systems[name] = base
        else:
            quantized = copy.deepcopy(base)
            systems[name] = quantize_for_decoding(
                quantized, weights, lm_head=head, exact_activations=exact
            )

    def run(name: str, count: int) -> torch.Tensor:
        model = systems[name]
        with torch.inference_mode():
            if name.startswith("HF"):
                return model.generate(
                    ids,
                    max_new_tokens=count,
                    min_new_tokens=count,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id,
                )
            return generate(model, ids, max_new_tokens=count, min_new_tokens=count)

    def prefill(name: str) -> None:
        with torch.inference_mode():
            systems[name](ids)

    # Reference: HF's greedy continuation and its logits at every position (one full pass).
    reference = run("HF transformers fp32", new_tokens)
    with torch.inference_mode():
        reference_logits = hf_model(reference).logits[0, prompt_length - 1 : -1]

    timings: dict[str, dict[str, list[float]]] = {
        n: {"one": [], "all": [], "prefill": []} for n in systems
    }
    for _ in range(rounds):
        for name in systems:
            run(name, 1)  # warm-up: first-call allocations, kernel selection
            timings[name]["prefill"].append(_best(lambda n=name: prefill(n), 1)[0])
            timings[name]["one"].append(_best(lambda n=name: run(n, 1), 1)[0])
            timings[name]["all"].append(_best(lambda n=name: run(n, new_tokens + 1), 1)[0])

    bandwidth = measure_bandwidth()
    rows = []
    hf_rate = None
    for name, model in systems.items():
        t = timings[name]
        decode_best = min(t["all"]) - min(t["one"])
        decode_median = statistics.median(t["all"]) - statistics.median(t["one"])
        rate = new_tokens / decode_best
        septet_model = base if name.startswith("HF") else model
        weight_bytes = weight_bytes_per_token(septet_model)
        kv_bytes = _kv_bytes_per_token(base, prompt_length + new_tokens // 2)
        bytes_per_token = weight_bytes + kv_bytes
        if name.startswith("HF"):
            hf_rate = rate
            error = {"max_abs_logit_error": 0.0, "mean_abs_logit_error": 0.0, "top1_agreement": 1.0}
            same_tokens = new_tokens
        else:
            logits = _step_logits(model, reference, prompt_length)
            difference = (logits - reference_logits).abs()
            error = {
                "max_abs_logit_error": difference.max().item(),
                "mean_abs_logit_error": difference.mean().item(),
                "top1_agreement": (logits.argmax(-1) == reference_logits.argmax(-1))
                .float()
                .mean()
                .item(),
            }
            greedy = run(name, new_tokens)
            same_tokens = _agreement(greedy[0, prompt_length:], reference[0, prompt_length:])
        rows.append(
            {
                "system": name,
                "decode_tok_s": rate,
                "decode_tok_s_median": new_tokens / decode_median,
                "speedup_vs_hf": None,
                "prefill_ms": 1000 * min(t["prefill"]),
                "prompt_tokens": prompt_length,
                "mb_per_token": bytes_per_token / 1e6,
                "bandwidth_fraction": bytes_per_token * rate / 1e9 / bandwidth["read_gb_s"],
                **error,
                "greedy_tokens_equal_to_hf": same_tokens,
            }
        )
    for row in rows:
        row["speedup_vs_hf"] = row["decode_tok_s"] / hf_rate
    return rows, bandwidth


# ------------------------------------------------------------------------------------------
# MiniLM sentence embeddings
# ------------------------------------------------------------------------------------------


def _long_texts(count: int) -> list[str]:
    """Debian package descriptions from the frozen debtags set, joined until long enough to
    fill 128 tokens."""
    with gzip.open(DEBTAGS, "rt", encoding="utf-8") as lines:
        descriptions = [
            json.loads(line)["text"] for _, line in zip(range(4 * count), lines, strict=False)
        ]
    texts = []
    for i in range(count):
        text = ""
        j = i
        while len(text.split()) < 160:
            text += " " + descriptions[j % len(descriptions)]
            j += count
        texts.append(text.strip())
    return texts


def bench_embeddings(rounds: int, batches: int = 4) -> list[dict[str, Any]]:
    folder = minilm_path()
    texts = _long_texts(32 * batches)
    embedder = SentenceEmbedder.from_pretrained(folder, max_length=128)
    # bf16 weights and activations: AVX512-BF16 / AMX kernels where the CPU has them; the
    # cosine to HF's fp32 vectors below says what the precision costs.
    embedder_bf16 = SentenceEmbedder.from_pretrained(folder, max_length=128, dtype="bfloat16")
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    hf_model = transformers.AutoModel.from_pretrained(folder).eval()

    def hf_encode() -> torch.Tensor:
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), 32):
                batch = hf_tokenizer(
                    texts[start : start + 32], padding=True, truncation=True, max_length=128,
                    return_tensors="pt",
                )  # fmt: skip
                hidden = hf_model(**batch).last_hidden_state
                mask = batch["attention_mask"][..., None].float()
                vectors = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
                out.append(torch.nn.functional.normalize(vectors, dim=1))
        return torch.cat(out)

    def septet_encode() -> torch.Tensor:
        return embedder.encode(texts, batch_size=32)

    def septet_bf16_encode() -> torch.Tensor:
        return embedder_bf16.encode(texts, batch_size=32).float()

    lengths = [
        len(ids)
        for ids in embedder.tokenizer(
            texts, padding=False, truncation=True, max_length=128, return_tensors=None
        )["input_ids"]
    ]
    systems = {
        "HF transformers": hf_encode,
        "septet": septet_encode,
        "septet bf16": septet_bf16_encode,
    }
    reference = hf_encode()
    cosines = {
        name: torch.nn.functional.cosine_similarity(reference, encode()).min().item()
        for name, encode in systems.items()
    }
    times: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(rounds):
        for name, encode in systems.items():
            times[name].append(_best(encode, 1)[0])
    hf_rate = len(texts) / min(times["HF transformers"])
    rows = []
    for name, values in times.items():
        rate = len(texts) / min(values)
        rows.append(
            {
                "system": name,
                "sentences_per_s": rate,
                "sentences_per_s_median": len(texts) / statistics.median(values),
                "speedup_vs_hf": rate / hf_rate,
                "batch": 32,
                "tokens_per_sentence": min(lengths),
                "min_cosine_to_hf": cosines[name],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()[0]

    decode_rows, bandwidth = bench_decoding(args.rounds, args.new_tokens)
    embed_rows = bench_embeddings(args.rounds)
    results = {
        "torch_threads": args.threads,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "memory_bandwidth": bandwidth,
        # The machine is shared: the 1-minute load average says how disturbed the run was.
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "decoding": decode_rows,
        "embeddings": embed_rows,
    }
    notes = f"""
Command: `python benchmarks/transformers/run.py {" ".join(sys.argv[1:])}`.
torch {torch.__version__}, transformers {transformers.__version__}, {args.threads} torch threads,
CPU capability {results["cpu_capability"]}; best of {args.rounds} alternating rounds. The
machine is shared with other work: 1-minute load average {load_before:.1f} before the run,
{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs; absolute rates are depressed by that
load, the side-by-side ratios much less.

Memory bandwidth measured in this run: {bandwidth["read_gb_s"]:.1f} GB/s reading (sum of a
512 MiB tensor), {bandwidth["copy_gb_s"]:.1f} GB/s copying (read + write). `bandwidth_fraction`
= bytes read per decoded token (weights as stored, plus the KV cache at mid-generation) x
tokens/s / read bandwidth.

Decoding: SmolLM2-135M-Instruct, batch 1, greedy, {args.new_tokens} new tokens after a
{decode_rows[0]["prompt_tokens"]}-token chat prompt; decode tok/s = {args.new_tokens} / (time of
{args.new_tokens + 1} tokens - time of 1 token); prefill_ms = one forward pass over the prompt.
Logit errors are against HF fp32 on HF's own greedy continuation, computed along septet's
cached decoding path. The int4 variants keep the GGUF's Q4_1 integers (groups of 32,
asymmetric) with scales rounded to bfloat16; activations enter the bf16/int kernels as two
bf16 halves (hi + lo) during decoding unless the name says "bf16 activations".

Embeddings: all-MiniLM-L6-v2, {embed_rows[0]["tokens_per_sentence"]} tokens per sentence,
batch 32, tokenisation to normalised vectors for both systems.
"""
    _, md_path = write_benchmark_results(
        "transformers",
        results,
        {"SmolLM2-135M decoding (batch 1)": decode_rows, "MiniLM sentence embeddings": embed_rows},
        notes=notes,
    )
    print(md_path.read_text())


if __name__ == "__main__":
    main()
