"""`septet tsdb ...`: an SQL shell over a database directory, like `sqlite3 DIR` or taos."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="An embedded time-series database (TDengine's SQL).")


@app.command()
def sql(
    directory: str = typer.Argument(
        ..., help="Database directory (created if missing), or :memory:."
    ),
    file: Path | None = typer.Argument(None, help="Run the statements in this file, then exit."),
    execute: list[str] = typer.Option([], "--execute", "-e", help="Run this SQL, then exit."),
    database: str | None = typer.Option(None, "--database", "-d", help="USE this database."),
    fsync: str = typer.Option("always", help="WAL fsync policy: always, periodic or off."),
    max_rows: int = typer.Option(1000, help="Print at most this many rows per result."),
) -> None:
    """Run SQL from -e, a file, or an interactive prompt (history in $SEPTET_HOME)."""
    from septet.tsdb.connection import connect
    from septet.tsdb.shell import Shell

    with connect(directory, database, fsync=fsync) as con:
        shell = Shell(con, max_rows=max_rows)
        if execute or file is not None:
            for text in execute:
                shell.run(text)
            if file is not None:
                if not file.exists():
                    from septet.tsdb.errors import TsdbError

                    raise TsdbError(f"no SQL file at {file}")
                shell.run(file.read_text())
            return
        shell.interactive()


@app.command()
def serve(
    data: Path = typer.Option(..., "--data", help="Database directory (created if missing)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(6041, help="TCP port (TDengine's REST port is 6041)."),
    fsync: str = typer.Option("always", help="WAL fsync policy: always, periodic or off."),
) -> None:
    """Serve DIR over HTTP: TDengine REST (/rest/sql), InfluxDB and OpenTSDB writes."""
    from septet.tsdb.server import serve as run

    run(data, host=host, port=port, fsync=fsync)


@app.command()
def write(
    directory: Path = typer.Argument(..., help="Database directory."),
    file: Path = typer.Argument(..., help="A file of InfluxDB line protocol."),
    database: str = typer.Option(..., "--database", "-d", help="Write into this database."),
    precision: str = typer.Option("ns", help="Timestamp unit of the lines: ns, us, ms, s."),
) -> None:
    """Write a line-protocol file (schemaless: tables and columns are created as needed)."""
    from septet.tsdb.connection import connect
    from septet.tsdb.errors import TsdbError
    from septet.tsdb.line_protocol import write_line_protocol

    if not file.exists():
        raise TsdbError(f"no line-protocol file at {file}")
    with connect(directory) as con:
        n = write_line_protocol(con, database, file.read_text(), precision)
    typer.echo(f"{n} row(s) written to {database}")
