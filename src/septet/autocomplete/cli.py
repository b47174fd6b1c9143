"""`septet autocomplete ...`: train, complete, serve (LSP on stdio, HTTP), evaluate."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Neural Python code completion.")


@app.command()
def train(
    out: Path = typer.Option(..., "--out", help="Folder for the tokenizer, model and curves."),
    corpus: list[Path] = typer.Option(
        None, "--corpus", help="Folder of .py files; repeat for several (default: stdlib)."
    ),
    exclude: list[str] = typer.Option(
        None, "--exclude", help="Leave out folders of this name at any depth; repeatable."
    ),
    max_package_mb: float = typer.Option(
        None, help="Cap what each top-level package of a corpus folder contributes (MB)."
    ),
    kind: str = typer.Option("lstm", help="lstm or llama."),
    size: str = typer.Option("small", help="tiny, small or (llama) medium."),
    vocab_size: int = typer.Option(4096),
    seq_len: int = typer.Option(128),
    batch_size: int = typer.Option(16),
    learning_rate: float = typer.Option(2e-3),
    max_steps: int = typer.Option(2000),
    max_minutes: float = typer.Option(None, help="Stop after this much wall time."),
    resume: bool = typer.Option(False, help="Continue from the newest checkpoint in --out."),
    threads: int = typer.Option(0, help="torch threads (0: torch's default)."),
    init_from: Path = typer.Option(
        None, help="Start from this trained model folder (its tokenizer and weights)."
    ),
    eval_every: int = typer.Option(100, help="Validate (and keep the best) every N steps."),
    device: str = typer.Option("auto", help="cpu, cuda, mps or auto (the best available)."),
) -> None:
    """Train a model on Python source (deduplicated, split by file)."""
    import json
    import sys

    import torch

    from septet.autocomplete.training import AutocompleteTrainingConfig, train_autocomplete

    if threads:
        torch.set_num_threads(threads)
    config = AutocompleteTrainingConfig(
        kind=kind,
        size=size,
        vocab_size=vocab_size,
        seq_len=seq_len,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_steps=max_steps,
        max_minutes=max_minutes,
        eval_every=eval_every,
        checkpoint_every=eval_every,
        init_from=None if init_from is None else str(init_from),
        device=device,
        exclude_dirs=list(exclude or []),
        max_bytes_per_package=None if max_package_mb is None else int(max_package_mb * 1e6),
    )
    command = "septet autocomplete train " + " ".join(sys.argv[3:])
    summary = train_autocomplete(out, corpus or None, config, resume=resume, command=command)
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "config"}))


@app.command()
def complete(
    file: Path = typer.Argument(..., help="A Python file; completes at its end (or --offset)."),
    offset: int = typer.Option(None, help="Character offset of the cursor (default: the end)."),
    model: Path = typer.Option(None, help="Model folder (default: the shipped model)."),
    limit: int = typer.Option(5),
) -> None:
    """Print ranked completions of the token at the cursor, then the inline suggestion."""
    from septet.autocomplete.completion import load_completer
    from septet.errors import InputError

    if not file.is_file():
        raise InputError(f"{file} is not a file")
    text = file.read_text(encoding="utf-8")
    text = text if offset is None else text[:offset]
    completer = load_completer(model)
    for c in completer.complete(text, limit=limit):
        typer.echo(f"{c.probability:7.2%}  {c.text!r}")
    typer.echo(f"inline suggestion: {completer.suggest(text)!r}")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(5000),
    model: Path = typer.Option(None, help="Model folder (default: the shipped model)."),
) -> None:
    """HTTP server for the anchor's editor extension: POST /autocomplete {"prompt": ...}."""
    import uvicorn

    from septet.autocomplete.completion import load_completer
    from septet.autocomplete.http_server import create_app

    uvicorn.run(create_app(load_completer(model)), host=host, port=port, log_level="warning")


@app.command()
def lsp(
    model: Path = typer.Option(None, help="Model folder (default: the shipped model)."),
) -> None:
    """Language server on stdin/stdout (point your editor's LSP client at this command)."""
    from septet.autocomplete.completion import load_completer
    from septet.autocomplete.lsp_server import create_server

    create_server(load_completer(model)).start_io()
