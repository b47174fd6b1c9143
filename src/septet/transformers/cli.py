"""``septet transformers ...``: thin commands over septet.transformers' public API.

Heavy libraries (torch, tokenizers) are imported inside the commands, so mounting this app
costs nothing. Results go to stdout (JSON lines where a program would read them), progress and
notes to stderr. Models default to the bundled ones: all-MiniLM-L6-v2 for ``embed`` and
SmolLM2-135M-Instruct (GGUF) for ``generate``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from septet.errors import ConfigError, InputError

app = typer.Typer(
    no_args_is_help=True,
    help="Transformer models (BERT, RoBERTa, DistilBERT, GPT-2, Llama) on published weights.",
)

MODEL_HELP = (
    "A model folder, a weight file (.gguf, .bin, .safetensors), a cached Hub name, or a "
    "bundled model: 'minilm' (all-MiniLM-L6-v2) or 'smollm2' (SmolLM2-135M-Instruct GGUF)."
)


def _model_path(name: str) -> str:
    """A model argument with the bundled models' short names resolved to their paths."""
    from septet.transformers.bundled import minilm_path, smollm2_gguf_path

    bundled = {"minilm": minilm_path, "smollm2": smollm2_gguf_path}
    return str(bundled[name]()) if name in bundled else name


def _texts(texts: list[str] | None, file: Path | None) -> list[str]:
    """The texts given as arguments, or one per line of ``file`` ('-' for stdin)."""
    if texts and file is not None:
        raise InputError("give texts as arguments or with --file, not both")
    if file is not None:
        if str(file) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            if not file.is_file():
                raise InputError(f"no file at {file}")
            lines = file.read_text(encoding="utf-8").splitlines()
        texts = [line for line in lines if line.strip()]
    if not texts:
        raise InputError("no texts: pass them as arguments or with --file")
    return list(texts)


def _limit_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


@app.command()
def embed(
    texts: list[str] | None = typer.Argument(None, help="Texts to embed."),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="Texts, one per line ('-': stdin)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help=MODEL_HELP + " [bundled MiniLM]"),
    query: str | None = typer.Option(
        None, "--query", help="Instead of vectors, rank the texts by cosine similarity to this."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the vectors to a .npy (or .jsonl) file."
    ),
    normalize: bool = typer.Option(True, help="L2-normalise the vectors."),
    batch_size: int = typer.Option(32, help="Texts per forward pass."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Sentence embeddings (mean pooling + normalisation, as sentence-transformers does)."""
    from septet.common.atomic import atomic_write, atomic_write_text
    from septet.transformers.embeddings import SentenceEmbedder

    _limit_threads(threads)
    items = _texts(texts, file)
    embedder = SentenceEmbedder.from_pretrained(_model_path(model or "minilm"))
    if query is not None:
        vectors = embedder.encode([query, *items], batch_size=batch_size, normalize=True)
        scores = (vectors[1:] @ vectors[0]).tolist()
        for score, text in sorted(zip(scores, items, strict=True), reverse=True):
            typer.echo(f"{score:.4f}\t{text}")
        return
    vectors = embedder.encode(items, batch_size=batch_size, normalize=normalize)
    if output is not None and output.suffix == ".npy":
        import numpy as np

        with atomic_write(output, "wb") as handle:
            np.save(handle, vectors.float().cpu().numpy())
        typer.echo(f"wrote {len(items)} vectors of {vectors.shape[1]} dimensions to {output}")
        return
    lines = [
        json.dumps({"text": text, "embedding": [round(x, 6) for x in vector]}, ensure_ascii=False)
        for text, vector in zip(items, vectors.tolist(), strict=True)
    ]
    if output is not None:
        atomic_write_text(output, "\n".join(lines) + "\n")
        typer.echo(f"wrote {len(items)} vectors of {vectors.shape[1]} dimensions to {output}")
    else:
        typer.echo("\n".join(lines))


@app.command()
def generate(
    prompt: str = typer.Argument(..., help="The prompt (a user message when --chat)."),
    model: str | None = typer.Option(
        None, "--model", "-m", help=MODEL_HELP + " [bundled SmolLM2-135M-Instruct]"
    ),
    chat: bool = typer.Option(
        True, help="Wrap the prompt in the model's chat template (when it has one)."
    ),
    system: str | None = typer.Option(None, help="A system message (with --chat)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", "-n"),
    temperature: float = typer.Option(0.0, help="0: greedy; above 0: sampling."),
    top_k: int = typer.Option(50, help="Sample among the k likeliest tokens (0: off)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling threshold."),
    repetition_penalty: float = typer.Option(1.0),
    stop: list[str] | None = typer.Option(None, "--stop", help="Stop at this text (repeatable)."),
    seed: int | None = typer.Option(None, help="Seed for reproducible sampling."),
    stream: bool = typer.Option(True, help="Print text as it is generated."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Continue a prompt with a decoder model (greedy unless --temperature > 0)."""
    from septet.transformers.auto import AutoModelForCausalLM
    from septet.transformers.generation import GenerationConfig, generate_text, stream_text
    from septet.transformers.tokenizer import Tokenizer

    _limit_threads(threads)
    source = _model_path(model or "smollm2")
    tokenizer = Tokenizer.from_pretrained(source)
    decoder = AutoModelForCausalLM.from_pretrained(source)
    text = prompt
    if chat and tokenizer.chat_template is not None:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    elif system:
        raise ConfigError("--system needs --chat and a model with a chat template")
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else 1.0,
        top_k=top_k,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        stop_strings=tuple(stop or ()),
        seed=seed,
    )
    if stream:
        for piece in stream_text(decoder, tokenizer, text, config):
            typer.echo(piece, nl=False)
        typer.echo("")
    else:
        typer.echo(generate_text(decoder, tokenizer, text, config))


@app.command("fill-mask")
def fill_mask(
    text: str = typer.Argument(..., help="Text with the mask token, e.g. 'Paris is the [MASK].'"),
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP + " (a masked-LM model)"),
    top_k: int = typer.Option(5, "--top-k", "-k"),
) -> None:
    """The likeliest tokens for each mask position; one JSON line per mask."""
    from septet.transformers.fill_mask import fill_mask as predict
    from septet.transformers.fill_mask import load_masked_lm

    masked_lm, tokenizer = load_masked_lm(_model_path(model))
    for row in predict(masked_lm, tokenizer, text, top_k):
        for candidate in row["candidates"]:
            candidate["score"] = round(candidate["score"], 6)
        typer.echo(json.dumps(row, ensure_ascii=False))


@app.command()
def classify(
    model: str = typer.Argument(..., help="A fine-tuned classifier folder (see `finetune`)."),
    texts: list[str] | None = typer.Argument(None, help="Texts to label."),
    file: Path | None = typer.Option(
        None, "--file", "-f", help="Texts, one per line ('-': stdin)."
    ),
    top_k: int | None = typer.Option(
        None, "--top-k", "-k", help="Labels per text [1; multi-label: all above threshold]."
    ),
    threshold: float = typer.Option(0.5, help="Multi-label: the probability to assign a label."),
) -> None:
    """Label texts with a sequence-classification model; one JSON line per text."""
    from septet.transformers.finetune import TextClassifier

    items = _texts(texts, file)
    classifier = TextClassifier.from_pretrained(model)
    k = top_k if top_k is not None else (None if classifier.multi_label else 1)
    for text, pairs in zip(
        items, classifier.predict(items, top_k=k, threshold=threshold), strict=True
    ):
        labels = [{"label": label, "score": round(score, 6)} for label, score in pairs]
        typer.echo(json.dumps({"text": text, "labels": labels}, ensure_ascii=False))


@app.command()
def finetune(
    model: str = typer.Option(..., "--model", "-m", help=MODEL_HELP + " (an encoder)"),
    train: Path = typer.Option(..., "--train", help='JSONL: {"text": ..., "label"|"labels": ...}.'),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the fine-tuned model."),
    eval_file: Path | None = typer.Option(None, "--eval", help="JSONL to evaluate on."),
    config_file: Path | None = typer.Option(
        None, "--config", help="JSON with FinetuneConfig/TrainingConfig settings."
    ),
    epochs: int | None = typer.Option(None, help="[3]"),
    learning_rate: float | None = typer.Option(None, "--lr", help="[5e-5]"),
    batch_size: int | None = typer.Option(None, help="[16]"),
    max_length: int | None = typer.Option(None, help="Tokens per text [128]."),
    gradient_accumulation: int | None = typer.Option(None, help="Micro-batches per step [1]."),
    eval_every: int | None = typer.Option(None, help="Evaluate every N steps [at the end]."),
    seed: int | None = typer.Option(None, help="[0]"),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --output."),
    keep_checkpoints: bool = typer.Option(
        False, help="Keep the training checkpoints (with optimizer state) after finishing."
    ),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
) -> None:
    """Fine-tune an encoder for text classification (single- or multi-label) from JSONL."""
    from septet.transformers.finetune import FinetuneConfig, finetune_text_classifier

    _limit_threads(threads)
    settings: dict = {}
    if config_file is not None:
        try:
            settings = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read the config {config_file}: {exc}") from exc
        if not isinstance(settings, dict):
            raise InputError(f"{config_file} must hold a JSON object")
    training = dict(settings.pop("training", {}) or {})
    optimizer = dict(training.pop("optimizer", {}) or {})
    settings.update(
        model=_model_path(model),
        train_file=str(train),
        output_dir=str(output),
        resume=resume,
        keep_checkpoints=keep_checkpoints,
    )
    for key, value in (
        ("eval_file", eval_file and str(eval_file)),
        ("batch_size", batch_size),
        ("max_length", max_length),
    ):
        if value is not None:
            settings[key] = value
    for key, value in (
        ("epochs", epochs),
        ("gradient_accumulation_steps", gradient_accumulation),
        ("eval_every", eval_every),
        ("seed", seed),
    ):
        if value is not None:
            training[key] = value
    if learning_rate is not None:
        optimizer["learning_rate"] = learning_rate
    defaults = FinetuneConfig.__dataclass_fields__["training"].default_factory()
    training.setdefault("epochs", defaults.epochs)
    optimizer.setdefault("warmup_ratio", defaults.optimizer.warmup_ratio)
    settings["training"] = {**training, "optimizer": optimizer}
    result = finetune_text_classifier(FinetuneConfig.from_dict(settings))
    kind = "multi-label" if result.multi_label else "single-label"
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    typer.echo(
        f"fine-tuned a {kind} classifier over {len(result.labels)} labels in {result.steps} "
        f"steps; {metrics}; saved to {result.output_dir}"
    )


@app.command()
def convert(
    source: str = typer.Argument(
        ...,
        help="A .gguf file, a pytorch_model.bin (or its folder), a model folder, or 'smollm2'.",
    ),
    output: Path = typer.Argument(..., help="The folder to write (safetensors + config.json)."),
    dtype: str = typer.Option("auto", help="auto (as stored), float32, float16 or bfloat16."),
) -> None:
    """Convert a checkpoint to a safetensors model folder that septet and HF both load."""
    from septet.transformers.convert import convert_checkpoint

    written = convert_checkpoint(_model_path(source), output, dtype=dtype)
    typer.echo(f"wrote {', '.join(p.name for p in written)} to {output}")
