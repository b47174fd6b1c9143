"""``septet bridge``: check the six directions on this machine. Heavy imports happen inside the
command."""

from __future__ import annotations

import json

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False)


@app.command()
def check(
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows instead of a table."),
) -> None:
    """Run f(a, b) = 3a + 4b² through every direction; show value, gradients and zero-copy."""
    from septet.bridge.selfcheck import check_directions

    rows = [c.as_row() for c in check_directions()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("source", "target", "f(1,3)", "df/da", "df/db", "zero-copy", "ok")
        for r in rows:
            table.add_row(
                r["source"],
                r["target"],
                f"{r['value']:g}",
                f"{r['grad_a']:g}",
                f"{r['grad_b']:g}",
                "yes" if r["zero_copy"] else "no",
                "✓" if r["ok"] else "✗",
            )
        Console().print(table)
    if not all(r["ok"] for r in rows):
        raise typer.Exit(1)


@app.command()
def info() -> None:
    """Show the installed framework versions and the devices each one sees."""
    import jax
    import tensorflow as tf
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    typer.echo(f"torch      {torch.__version__}  cuda devices: {cuda}")
    gpus = len(tf.config.list_logical_devices("GPU"))
    typer.echo(f"tensorflow {tf.__version__}  gpu devices: {gpus}")
    typer.echo(f"jax        {jax.__version__}  devices: {[str(d) for d in jax.devices()]}")
    typer.echo(f"jax 64-bit mode: {'on' if jax.config.jax_enable_x64 else 'off'}")
