"""The columnar line-protocol path (septet.tsdb.line_batch) against the exact per-line parser:
the same points from any batch, the same first error from any text, and the same tables and
errors after writing."""

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import septet.tsdb as tsdb
from septet.tsdb.line_batch import Fallback, parse_rows
from septet.tsdb.line_protocol import (
    LineProtocolError,
    Unsigned,
    _type_of,
    parse_lines,
    write_line_protocol,
    write_points,
)


def _typed(fields: dict) -> dict:
    return {k: (_type_of(v), v) for k, v in fields.items()}


def _from_rows(rows) -> list[tuple]:
    """Rows back to (line, measurement, tags, typed fields, timestamp), in line order."""
    out = []
    for r in rows:
        cols = {}
        for k, col in r.fields.items():
            values = col.to_pylist()
            cols[k] = [Unsigned(v) for v in values] if str(col.type) == "uint64" else values
        for i, line in enumerate(r.lines.tolist()):
            missing = r.missing_ts is not None and r.missing_ts[i]
            ts = None if missing else int(r.timestamps[i])
            fields = _typed({k: v[i] for k, v in cols.items()})
            out.append((line, r.measurement, r.series[r.series_index[i]], fields, ts))
    return sorted(out, key=lambda t: t[0])


def _from_points(points) -> list[tuple]:
    return [(p.line, p.measurement, p.tags, _typed(p.fields), p.timestamp) for p in points]


T_2020, T_2030 = 1_577_836_800 * 10**9, 1_893_456_000 * 10**9
plain_text = st.text("abcxyz019_.-", min_size=1, max_size=5)
odd_text = st.sampled_from(["a b", "x,y", "k=v", "naïve", "日本", "t\\u"])
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
value_text = st.one_of(
    floats.map(repr),
    floats.map(lambda v: f"{v:.4f}"),
    floats.map(lambda v: f"{v:e}"),
    st.integers(-(2**31), 2**31).map(str),  # a float written without a point
    st.integers(-(2**63), 2**63 - 1).map(lambda v: f"{v}i"),
    st.integers(0, 2**64 - 1).map(lambda v: f"{v}u"),
    st.sampled_from(["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"]),
    st.sampled_from(["+5i", "007i", "-0", ".5", "5.", "1E5", "+1.5e-3"]),
    st.text('ab "\\,=', max_size=6).map(
        lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    ),
)


def _esc(text: str, chars: str) -> str:
    out = text.replace("\\", "\\\\")
    for c in chars:
        out = out.replace(c, "\\" + c)
    return out


@st.composite
def lines(draw, ts_lo=-(2**62), ts_hi=2**62, optional_ts=True):
    measurement = draw(st.sampled_from(["cpu", "mem", "Disk", "net io"]))
    tags = draw(
        st.dictionaries(
            st.sampled_from(["host", "region", "Host", "rack"]), plain_text | odd_text, max_size=3
        )
    )
    fields = draw(
        st.dictionaries(
            st.sampled_from(["usage", "n", "flag", "note", "u", "Usage"]),
            value_text,
            min_size=1,
            max_size=4,
        )
    )
    line = _esc(measurement, ", ")
    line += "".join(f",{_esc(k, ',= ')}={_esc(v, ',= ')}" for k, v in tags.items())
    line += " " + ",".join(f"{k}={v}" for k, v in fields.items())
    ts = draw((st.none() if optional_ts else st.nothing()) | st.integers(ts_lo, ts_hi))
    return line if ts is None else f"{line} {ts}"


batches = st.lists(
    lines() | st.sampled_from(["", "# a comment", "   ", "cpu v=1\r"]), min_size=1, max_size=15
).map("\n".join)


@settings(max_examples=100, deadline=None)
@given(batches)
def test_columnar_path_reads_any_valid_batch_as_the_exact_parser_does(text):
    assert _from_rows(parse_rows(text.encode())) == _from_points(parse_lines(text))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text('ab=, \\"0123456789.-eiutf#\r', max_size=20), max_size=6).map("\n".join))
def test_columnar_path_finds_the_same_first_error_in_any_text(text):
    try:
        expected = _from_points(parse_lines(text))
    except LineProtocolError as e:
        with pytest.raises(LineProtocolError) as got:
            parse_rows(text.encode())
        assert str(got.value) == str(e)
        return
    with contextlib.suppress(Fallback):  # Fallback: the writer takes the exact path
        assert _from_rows(parse_rows(text.encode())) == expected


def _written(texts: list[str], fast: bool):
    con = tsdb.connect(":memory:")
    con.execute("CREATE DATABASE db PRECISION 'ns' KEEP 36500")
    try:
        for text in texts:
            if fast:
                write_line_protocol(con, "db", text, "ns")
            else:
                write_points(con, "db", parse_lines(text), "ns")
    except tsdb.TsdbError as e:
        return type(e).__name__, str(e)
    tables = []
    for name in sorted(row[0] for row in con.execute("SHOW db.STABLES").fetchall()):
        desc = con.execute(f"DESCRIBE db.{name}").fetchall()
        rows = con.execute(f"SELECT *, tbname FROM db.{name} ORDER BY tbname, _ts").fetchall()
        tables.append((name, desc, rows))
    return tables


@settings(max_examples=25, deadline=None)
@given(st.lists(lines(T_2020, T_2030, optional_ts=False), min_size=1, max_size=12).map("\n".join))
def test_columnar_writes_equal_exact_writes(text):
    # Timestamps are given: a missing one is the time of writing, which differs between runs.
    assert _written([text], fast=True) == _written([text], fast=False)


given_lines = st.lists(lines(T_2020, T_2030, optional_ts=False), min_size=1, max_size=8)


@settings(max_examples=20, deadline=None)
@given(given_lines.map("\n".join), given_lines.map("\n".join))
def test_later_batches_into_existing_and_new_sub_tables_equal_exact_writes(first, second):
    # A batch whose sub-tables all exist leaves their tags out; one with new sub-tables does not.
    texts = [first, second, first, second]
    assert _written(texts, fast=True) == _written(texts, fast=False)


def test_large_batch_with_one_bad_line_names_it_and_writes_nothing():
    con = tsdb.connect(":memory:")
    con.execute("CREATE DATABASE db PRECISION 'ms'")
    good = [
        f"cpu,host=h{i % 50} usage={i * 0.5},n={i}i {T_2020 // 10**6 + i}" for i in range(10_000)
    ]
    bad = [*good[:6000], "cpu,host=h1 usage=1.5,n=3x 1700000000000", *good[6000:]]
    with pytest.raises(LineProtocolError, match=r"^line 6001, column 25: .*'3x'"):
        write_line_protocol(con, "db", "\n".join(bad), "ms")
    assert con.execute("SHOW db.STABLES").fetchall() == []
    assert write_line_protocol(con, "db", "\n".join(good), "ms") == 10_000
    rows = con.execute("SELECT count(*), sum(n), count(DISTINCT host) FROM db.cpu").fetchall()
    assert rows == [(10_000, sum(range(10_000)), 50)]


def test_many_batches_into_the_same_sub_tables_keep_the_last_row_written_per_timestamp():
    # More batches than the memtable keeps per table before merging them (at the 33rd, 65th
    # and 97th): in time order with one schema, in time order across a new field, then out of
    # order and rewriting earlier timestamps; every (host, timestamp) reads back as the last
    # value written for it.
    import datetime as dt
    import random

    con = tsdb.connect(":memory:")
    con.execute("CREATE DATABASE db PRECISION 'ms' KEEP 36500")
    rng = random.Random(3)
    base = T_2020 // 10**6
    expected = {}
    for b in range(97):  # a table's chunks are merged at its 33rd: the last batch merges
        lines = []
        for host in ("a", "b", "c"):
            stamps = range(5 * b, 5 * b + 5) if b < 70 else rng.sample(range(400), 5)
            for t in stamps:
                v = rng.random()
                stamp = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=base + t)  # UTC
                expected[(host, stamp)] = v
                extra = ",w=1i" if b >= 40 else ""  # a new field: ALTER between the batches
                lines.append(f"m,host={host} v={v!r}{extra} {base + t}")
        if b >= 70:
            rng.shuffle(lines)
        write_line_protocol(con, "db", "\n".join(lines), "ms")
    rows = con.execute("SELECT host, _ts, v FROM db.m").fetchall()
    got = {(host, ts): v for host, ts, v in rows}
    assert len(rows) == len(got) == len(expected)
    assert got == expected
