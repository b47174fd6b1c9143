"""`septet tsdb bench`, embedded and against a server, and SHOW commands for server state."""

import httpx
from typer.testing import CliRunner

from septet.tsdb.cli import app

from .server_util import ThreadServer

ROOT = ("root", "taosdata")


def test_bench_embedded(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--data", str(tmp_path), "-t", "7", "-n", "250",
                                 "-r", "100"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "7 tables x 250 rows = 1750 rows" in r.output and "= 1750" in r.output


def test_bench_against_server_and_show_state(tmp_path):
    with ThreadServer(tmp_path, fsync="off") as s:
        r = CliRunner().invoke(app, ["bench", "--url", s.url, "-t", "3", "-n", "100"])
        assert r.exit_code == 0, r.output
        assert "= 300" in r.output

        def show(what):
            return httpx.post(f"{s.url}/rest/sql", content=f"SHOW {what}", auth=ROOT).json()

        assert [r[0] for r in show("DATABASES")["data"]] == ["test"]
        assert show("test.STABLES")["data"][0][:1] == ["meters"]
        assert len(show("test.TABLES")["data"]) == 3
        assert show("USERS")["data"][0][0] == "root"
        assert show("CONNECTIONS")["data"][0][0] >= 6  # requests served
    r = CliRunner().invoke(app, ["bench", "-t", "3"])
    assert r.exit_code != 0
    r = CliRunner().invoke(app, ["bench", "--data", str(tmp_path), "-d", "x; DROP DATABASE y"])
    assert r.exit_code != 0 and "invalid database name" in str(r.exception)
