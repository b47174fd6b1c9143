"""InfluxDB line protocol: the parser (with hypothesis round trips), schemaless writes, and a real
InfluxDB client (PyPI influxdb 5.x) writing to the server."""

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from influxdb import InfluxDBClient
from typer.testing import CliRunner

import septet.tsdb as tsdb
from septet.tsdb.cli import app
from septet.tsdb.line_protocol import (
    LineProtocolError,
    Unsigned,
    parse_line,
    parse_lines,
    write_line_protocol,
)

from .server_util import ThreadServer

ROOT = ("root", "taosdata")


def test_parse_line_escapes_and_types():
    p = parse_line(r'cpu\ load,host=a\,b\ c,k\=x=v\=w f=1.5,i=-3i,u=7u,b=t,s="say \"hi\" \\ ok" 42')
    assert p.measurement == "cpu load"
    assert p.tags == {"host": "a,b c", "k=x": "v=w"}
    assert p.fields == {"f": 1.5, "i": -3, "u": 7, "b": True, "s": 'say "hi" \\ ok'}
    assert isinstance(p.fields["u"], Unsigned) and p.timestamp == 42
    assert parse_line("m v=1").timestamp is None and parse_line("m v=1").fields == {"v": 1.0}


@pytest.mark.parametrize(
    "line, column, words",
    [
        ("m", 2, "space"),
        ("m,t v=1", 3, "tag"),
        ("m v=", 5, "no value"),
        ("m v=1x", 5, "invalid value"),
        ('m v="open', 5, "closing quote"),
        ("m v=1 12ab", 7, "not an integer"),
        ("m v=99999999999999999999i", 5, "64 bits"),
        ("m v=-1u", 5, "64 bits"),
    ],
)
def test_malformed_lines_name_line_and_column(line, column, words):
    with pytest.raises(LineProtocolError, match=words) as e:
        parse_lines("ok v=1\n" + line)
    assert (e.value.line, e.value.column) == (2, column)
    assert str(e.value).startswith(f"line 2, column {column}:")


def _escape(text: str, chars: str) -> str:
    out = text.replace("\\", "\\\\") if "\\" in chars else text
    for c in chars.replace("\\", ""):
        out = out.replace(c, "\\" + c)
    return out


names = st.text(st.characters(codec="utf-8", exclude_characters="\n\r\\"), min_size=1, max_size=8)
field_values = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=10),
)


@given(
    measurement=names.filter(lambda s: not s.startswith("#") and s.strip()),
    tags=st.dictionaries(names, names, max_size=3),
    fields=st.dictionaries(names, field_values, min_size=1, max_size=4),
    ts=st.none() | st.integers(-(2**62), 2**62),
)
def test_any_point_round_trips_through_its_escaped_line(measurement, tags, fields, ts):
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return f"{v}i"
        if isinstance(v, float):
            return repr(v)
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    line = _escape(measurement, ", \\")
    line += "".join(f",{_escape(k, ',= ')}={_escape(v, ',= ')}" for k, v in tags.items())
    line += " " + ",".join(f"{_escape(k, ',= ')}={value(v)}" for k, v in fields.items())
    if ts is not None:
        line += f" {ts}"
    p = parse_line(line)
    assert (p.measurement, p.tags, p.fields, p.timestamp) == (measurement, tags, fields, ts)


@given(st.text(max_size=60))
def test_the_parser_raises_only_line_protocol_errors(text):
    try:
        points = parse_lines(text)
    except LineProtocolError as e:
        assert 1 <= e.line <= text.count("\n") + 1 and e.column >= 1
    else:
        assert all(p.measurement and p.fields for p in points)


def test_schemaless_write_creates_and_extends_tables():
    con = tsdb.connect(":memory:")
    con.execute("CREATE DATABASE db PRECISION 'ms'")
    t0 = 1_700_000_000
    n = write_line_protocol(
        con, "db", f"cpu,host=a usage=1.5,n=3i {t0}\ncpu,host=b usage=2.5 {t0 + 1}\n", "s"
    )
    assert n == 2
    # A new field and a new tag later: added to the super table; old rows read NULL.
    write_line_protocol(con, "db", f'cpu,host=a,dc=eu usage=3.5,note="x y" {t0 + 2}', "s")
    rows = con.execute("SELECT host, dc, usage, n, note FROM db.cpu ORDER BY _ts").fetchall()
    assert rows == [("a", None, 1.5, 3, None), ("b", None, 2.5, None, None),
                    ("a", "eu", 3.5, None, "x y")]  # fmt: skip
    assert len(con.execute("SHOW db.TABLES").fetchall()) == 3  # one per tag set
    # A malformed line anywhere writes nothing of its batch.
    with pytest.raises(LineProtocolError, match="line 2"):
        write_line_protocol(con, "db", f"cpu,host=z usage=9 {t0 + 3}\ncpu,host=z usage=", "s")
    with pytest.raises(tsdb.TsdbError, match="BIGINT"):  # a field may not change type
        write_line_protocol(con, "db", f"cpu,host=z usage=9i {t0 + 3}", "s")
    assert con.execute("SELECT count(*) FROM db.cpu").fetchall() == [(3,)]
    # A batch is one write: a row refused late (older than KEEP) keeps every other
    # measurement of its batch out too.
    with pytest.raises(tsdb.TsdbError, match="KEEP"):
        write_line_protocol(con, "db", f"cpu,host=a usage=1 {t0 + 9}\nold v=1 1000", "s")
    assert con.execute("SELECT count(*) FROM db.cpu").fetchall() == [(3,)]
    # Nanosecond timestamps convert exactly (no float rounding) to the database's precision.
    write_line_protocol(con, "db", "ns v=1 1700000000123999999")
    ts = con.execute("SELECT CAST(_ts AS BIGINT) FROM db.ns").fetchall()
    assert ts == [(1700000000123,)]


def test_influxdb_client_writes_to_the_server(tmp_path):
    with ThreadServer(tmp_path, fsync="off") as s:
        httpx.post(f"{s.url}/rest/sql", content="CREATE DATABASE metrics PRECISION 'ms'", auth=ROOT)
        client = InfluxDBClient(
            "127.0.0.1", s.port, "root", "taosdata", "metrics", path="/influxdb/v1"
        )
        points = [
            {
                "measurement": "weather",
                "tags": {"city": "San Francisco", "station": f"s{i % 3}"},
                "time": 1_700_000_000_000 + i * 1000,
                "fields": {"temp": 10.0 + i, "humidity": i, "ok": i % 2 == 0},
            }
            for i in range(30)
        ]
        assert client.write_points(points, time_precision="ms", batch_size=10)
        body = httpx.post(
            f"{s.url}/rest/sql/metrics",
            content="SELECT station, count(*), sum(humidity) FROM weather "
            "WHERE city = 'San Francisco' GROUP BY station ORDER BY station",
            auth=ROOT,
        ).json()
        assert body["data"] == [["s0", 10, 135], ["s1", 10, 145], ["s2", 10, 155]]
        # Errors reach the client as InfluxDB's 400 with the message; wrong password is 401.
        r = httpx.post(f"{s.url}/influxdb/v1/write?db=metrics", content="w v=", auth=ROOT)
        assert r.status_code == 400 and "line 1, column 5" in r.json()["desc"]
        bad = InfluxDBClient("127.0.0.1", s.port, "root", "nope", "metrics", path="/influxdb/v1")
        with pytest.raises(Exception, match="401"):
            bad.write_points(points[:1], time_precision="ms")
        # A read-only user cannot write.
        httpx.post(f"{s.url}/rest/sql", content="CREATE USER ro PASS 'pw' READONLY", auth=ROOT)
        r = httpx.post(f"{s.url}/influxdb/v1/write?db=metrics", content="w v=1", auth=("ro", "pw"))
        assert r.status_code == 403
        # OpenTSDB telnet put lines.
        r = httpx.post(
            f"{s.url}/opentsdb/v1/put/telnet/metrics",
            content="put sys.cpu 1700000000 12.5 host=web01\n"
            "put sys.cpu 1700000001000 13 host=web01",
            auth=ROOT,
        )
        assert r.json() == {"code": 0, "rows": 2}
        body = httpx.post(
            f"{s.url}/rest/sql/metrics", content="SELECT host, _value FROM sys_cpu", auth=ROOT
        ).json()
        assert body["data"] == [["web01", 12.5], ["web01", 13.0]]  # dots become '_'


def test_cli_write(tmp_path):
    data = tmp_path / "db"
    with tsdb.connect(data) as con:
        con.execute("CREATE DATABASE lp")
    lp = tmp_path / "x.lp"
    lp.write_text("# a comment\nm,t=a v=1 1700000000000\n\nm,t=b v=2 1700000001000\n")
    r = CliRunner().invoke(app, ["write", str(data), str(lp), "-d", "lp", "--precision", "ms"])
    assert r.exit_code == 0, r.output
    assert "2 row(s)" in r.output
    with tsdb.connect(data) as con:
        assert con.execute("SELECT t, v FROM lp.m ORDER BY _ts").fetchall() == [
            ("a", 1.0),
            ("b", 2.0),
        ]


def test_lines_go_into_a_super_table_made_by_sql_whatever_its_timestamp_is_called():
    con = tsdb.connect(":memory:")
    con.execute("CREATE DATABASE db PRECISION 'ms'")
    con.execute("CREATE STABLE db.cpu (ts TIMESTAMP, usage DOUBLE) TAGS (hostname VARCHAR(32))")
    lines = "cpu,hostname=a usage=1.5,procs=3i 1700000000000\ncpu,hostname=b usage=2 1700000000001"
    assert write_line_protocol(con, "db", lines, "ms") == 2
    q = "SELECT CAST(ts AS BIGINT), hostname, usage, procs FROM db.cpu ORDER BY hostname"
    assert con.execute(q).fetchall() == [
        (1700000000000, "a", 1.5, 3),
        (1700000000001, "b", 2.0, None),
    ]
    assert [r[0] for r in con.execute("DESCRIBE db.cpu").fetchall()] == [
        "ts", "usage", "procs", "hostname"]  # fmt: skip
