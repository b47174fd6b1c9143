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
    keep_alive: int = typer.Option(600, help="Seconds an idle keep-alive connection stays open."),
    background_flush: bool = typer.Option(
        True, help="Encode flushed segments in a process of their own while writes go on."
    ),
    parse_processes: int | None = typer.Option(
        None, help="Processes that parse half of each large write [default: cores - 1]."
    ),
    memtable_mb: int = typer.Option(256, help="Flush the memtable when it holds this many MiB."),
) -> None:
    """Serve DIR over HTTP: TDengine REST (/rest/sql), InfluxDB and OpenTSDB writes."""
    from septet.tsdb.server import serve as run

    run(
        data, host=host, port=port, fsync=fsync, keep_alive_s=keep_alive,
        background_flush=background_flush, parse_processes=parse_processes,
        memtable_bytes=memtable_mb << 20,
    )  # fmt: skip


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


@app.command()
def bench(
    data: Path | None = typer.Option(None, "--data", help="Load into this directory (embedded)."),
    url: str | None = typer.Option(None, help="Or load into a server, e.g. http://127.0.0.1:6041."),
    user: str = typer.Option("root", help="Server user."),
    password: str = typer.Option("taosdata", help="Server password."),
    tables: int = typer.Option(100, "--tables", "-t", help="Number of sub-tables."),
    rows: int = typer.Option(1000, "--rows", "-n", help="Rows per sub-table."),
    batch: int = typer.Option(1000, "--batch", "-r", help="Rows per INSERT statement."),
    database: str = typer.Option("test", "--database", "-d", help="Database (dropped first!)."),
) -> None:
    """taosBenchmark-like load: meters(ts, current, voltage, phase) TAGS(groupid, location)."""
    from septet.tsdb.bench_load import run_bench
    from septet.tsdb.errors import TsdbError

    if (data is None) == (url is None):
        raise TsdbError("give exactly one of --data DIR or --url http://host:port")
    if data is not None:
        from septet.tsdb.connection import connect

        with connect(data) as con:
            summary = run_bench(con, tables, rows, batch, database)
    else:
        import httpx

        with httpx.Client(auth=(user, password), timeout=60) as client:

            def sql(text: str) -> dict:
                body = client.post(f"{url.rstrip('/')}/rest/sql", content=text).json()
                if body.get("code") != 0:
                    raise TsdbError(f"server error: {body.get('desc')}")
                return body

            summary = run_bench(sql, tables, rows, batch, database)
    typer.echo(summary.line())
