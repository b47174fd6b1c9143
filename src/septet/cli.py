"""The ``septet`` command: global options, ``version``, ``demo``, and each installed part's
commands mounted as ``septet <part> ...``.

Parts' CLI modules import their heavy libraries inside the commands, so ``septet --help``
stays fast and imports no torch, TensorFlow or JAX.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
import traceback
from pathlib import Path

import typer

try:  # newer typer parses with its own copy of click, whose errors derive from this
    from typer.exceptions import TyperException as CommandLineError
except ImportError:  # pragma: no cover - older typer raises click's own
    from click.exceptions import ClickException as CommandLineError

from septet import __version__
from septet.errors import SeptetError
from septet.parts import PARTS, part_named, present_parts

app = typer.Typer(
    name="septet",
    help="Seven machine-learning systems in one toolkit. `septet demo` runs the tour.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help text: parts write [section.key] and [default] in docstrings, not rich markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_debug = os.environ.get("SEPTET_DEBUG", "") not in ("", "0")


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    global _debug
    _debug = _debug or debug
    logging.basicConfig(
        level=logging.DEBUG if _debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if quiet:
        from septet.common.progress import set_quiet

        set_quiet(True)


@app.command()
def version() -> None:
    """Print septet's version and which parts are installed."""
    typer.echo(f"septet {__version__}")
    for part in PARTS:
        state = (
            "installed"
            if part.is_present()
            else f"not installed (pip install 'septet[{part.extra}]')"
        )
        typer.echo(f"  {part.name:<13} {state}")


@app.command()
def demo(
    part: str | None = typer.Argument(None, help="Run only this part's demo."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for the demos' outputs [default: $SEPTET_HOME/demo]."
    ),
) -> None:
    """Run the tour: each installed part's demo, then a summary table."""
    from rich.console import Console
    from rich.table import Table

    from septet.common.paths import septet_home

    if part is not None:
        chosen = part_named(part)
        if not chosen.is_present():
            raise SeptetError(
                f"part {part!r} is not installed; install it with: pip install 'septet[{part}]'"
            )
        parts = [chosen]
    else:
        parts = present_parts()
    if not parts:
        raise SeptetError("no part is installed; install them with: pip install 'septet[all]'")
    out_dir = out if out is not None else septet_home("demo")

    table = Table(title="septet demo")
    for column in ("part", "what it did", "seconds", "output"):
        table.add_column(column)
    failures = 0
    console = Console()
    for each in parts:
        console.print(f"[bold]{each.name}[/bold]: {each.summary}")
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"septet.{each.name}.demo")
            report = module.run_demo(out_dir / each.name)
            summary = report.summary
            outputs = ", ".join(str(p) for p in report.outputs) or "-"
        except SeptetError as error:
            failures += 1
            summary, outputs = f"[red]failed: {error}[/red]", "-"
        seconds = time.perf_counter() - started
        table.add_row(each.name, summary, f"{seconds:.1f}", outputs)
    console.print(table)
    if failures:
        raise typer.Exit(1)


def _mount_parts() -> None:
    for part in present_parts():
        try:
            module = importlib.import_module(f"septet.{part.name}.cli")
        except ModuleNotFoundError as error:
            if error.name and error.name.startswith(f"septet.{part.name}"):
                continue  # the part has no commands of its own
            raise
        app.add_typer(module.app, name=part.name, help=f"{part.summary} ({part.system}).")


_mount_parts()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script and ``python -m septet``."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="septet", standalone_mode=False)
    except typer.Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except CommandLineError as error:  # usage errors: bad option, missing argument
        error.show()
        sys.exit(error.exit_code)
    except SeptetError as error:
        if _debug:
            traceback.print_exc()
        print(f"error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # a bug in septet: still one line unless --debug
        if _debug:
            traceback.print_exc()
        print(
            f"error: unexpected {type(error).__name__}: {error} "
            "(rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
