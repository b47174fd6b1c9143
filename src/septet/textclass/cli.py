"""``septet textclass ...``: train, evaluate and apply text classifiers from one config file."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True,
    help="Hierarchical multi-label text classification (NeuralClassifier's encoders and more).",
)


def _print_scores(title: str, scores: dict) -> None:
    keys = ("micro_f1", "macro_f1", "macro_f1_harmonic", "micro_precision", "micro_recall")
    typer.echo(f"{title}: " + ", ".join(f"{k} {scores[k]:.4f}" for k in keys))


@app.command()
def train(config: Path = typer.Argument(..., help="TOML or JSON config file.")) -> None:
    """Train a model; the best epoch (dev micro-F1) is saved under output.dir/model."""
    from septet.textclass.runner import train_from_config

    summary = train_from_config(config)
    typer.echo(
        f"trained on {summary['train_documents']} documents in {summary['seconds']:.1f} s "
        f"({summary['documents_per_second']:.0f} docs/s); best epoch {summary['best_epoch']}, "
        f"{summary['stopped_because']}"
    )
    if "dev" in summary:
        _print_scores("dev", summary["dev"])
    typer.echo(f"model: {summary['model']}")


@app.command("eval")
def evaluate(
    config: Path = typer.Argument(..., help="TOML or JSON config file."),
    split: str = typer.Option("test", help="Which data.<split> to score: train, dev or test."),
) -> None:
    """Score the trained model: flat, per hierarchy level; per-label rows in the JSON file."""
    from septet.textclass.runner import evaluate_from_config

    metrics = evaluate_from_config(config, split)
    levels = metrics.get("levels", {})
    _print_scores(f"{split} (all levels)" if levels else split, metrics["flat"])
    for level, scores in levels.items():
        _print_scores(f"{split} level {level}", scores)


@app.command()
def predict(
    config: Path = typer.Argument(..., help="TOML or JSON config file."),
    input: Path = typer.Option(..., "--input", "-i", help="JSONL documents to label."),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file for the predictions."),
    scores: bool = typer.Option(False, help="Also write each predicted label's probability."),
) -> None:
    """Label documents with the trained model, one JSON line per document."""
    from septet.textclass.runner import predict_from_config

    count = predict_from_config(config, input, output, scores=scores)
    typer.echo(f"labelled {count} documents -> {output}")


@app.command()
def keys() -> None:
    """Every config section and key, with defaults and meanings (Markdown)."""
    from septet.textclass.config import config_reference

    typer.echo(config_reference())


@app.command()
def encoders() -> None:
    """The registered encoders and their hyper-parameters (the keys of [model.params])."""
    import dataclasses

    from septet.textclass.encoders.base import encoder_class, list_encoders

    for name in list_encoders():
        cls = encoder_class(name)
        params = {f.name: f.default for f in dataclasses.fields(cls.Params)}
        typer.echo(f"{name}: {json.dumps(params)}")


@app.command("build-debtags")
def build_debtags_command(
    packages: list[Path] = typer.Option(..., "--packages", help="Debian Packages index files."),
    translations: list[Path] = typer.Option(
        ..., "--translation", help="Translation-en index files."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the split and taxonomy."),
) -> None:
    """Build the debtags corpus (train/dev/test JSONL + taxonomy) from Debian index files."""
    from septet.textclass.datasets.debtags import build_debtags

    counts = build_debtags(packages, translations, out)
    typer.echo(", ".join(f"{k} {v}" for k, v in counts.items()) + f" -> {out}")
