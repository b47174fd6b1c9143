"""The interactive SQL shell: statements end with ';', results print as rich tables,
history is kept in ``$SEPTET_HOME/tsdb_history``."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.table import Table

from septet.common.paths import septet_home
from septet.tsdb.connection import Connection
from septet.tsdb.errors import TsdbError


class Shell:
    """Runs SQL text against a connection and prints what comes back."""

    def __init__(
        self, connection: Connection, max_rows: int = 1000, console: Console | None = None
    ):
        self.connection = connection
        self.max_rows = max_rows
        self.console = console or Console()

    def run(self, text: str) -> None:
        """Run every statement in ``text``; errors propagate (the CLI prints one line)."""
        start = time.perf_counter()
        cur = self.connection.cursor()
        cur.execute(text)
        elapsed = time.perf_counter() - start
        if cur.description is not None:
            self.print_table(cur.fetch_arrow())
            self.console.print(f"Query OK, {cur.rowcount} row(s) in set ({elapsed:.3f}s)")
        else:
            self.console.print(f"Query OK, {max(cur.rowcount, 0)} row(s) affected ({elapsed:.3f}s)")

    def print_table(self, result: pa.Table) -> None:
        table = Table(show_lines=False)
        for name in result.column_names:
            table.add_column(name, overflow="fold")
        shown = result.slice(0, self.max_rows)
        for row in zip(*[c.to_pylist() for c in shown.columns], strict=True):
            table.add_row(*[_cell(v) for v in row])
        self.console.print(table)
        if result.num_rows > self.max_rows:
            self.console.print(f"({result.num_rows - self.max_rows} more rows not shown)")

    def interactive(self) -> None:
        """A read-eval-print loop; a statement may span lines until its ';'."""
        history = septet_home() / "tsdb_history"
        try:
            import readline

            history.parent.mkdir(parents=True, exist_ok=True)
            if history.exists():
                readline.read_history_file(history)
        except (ImportError, OSError):
            readline = None  # type: ignore[assignment]
        self.console.print("septet tsdb shell: end statements with ';', quit with \\q or Ctrl-D")
        buffer = ""
        while True:
            try:
                line = input("tsdb> " if not buffer else "   -> ")
            except (EOFError, KeyboardInterrupt):
                self.console.print()
                break
            if not buffer and line.strip() in ("\\q", "quit", "exit", "q"):
                break
            buffer += line + "\n"
            if not buffer.strip().endswith(";"):
                continue
            text, buffer = buffer, ""
            try:
                self.run(text)
            except TsdbError as exc:
                self.console.print(f"[red]error:[/red] {exc}")
            if readline is not None:
                with contextlib.suppress(OSError):
                    readline.write_history_file(history)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
