"""SELECT semantics, each checked against a reference computed another way: DuckDB over the
raw rows, or numpy/pandas. The fixture data is irregular, out of order, partly NULL, has a
25-minute hole, and is half in segments, half in the memtable (see conftest.py)."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from septet.tsdb.errors import TsdbError

from .conftest import MINUTE, T0


class Close(float):
    """A float that equals another within 1e-9 relative (sums differ in the last bits)."""

    def __eq__(self, other):
        return isinstance(other, int | float) and math.isclose(
            self, other, rel_tol=1e-9, abs_tol=1e-9
        )

    __hash__ = float.__hash__


def norm(rows):
    """Rows as sorted tuples; floats compare within 1e-9, timestamps as epoch ms, NaN as None."""
    out = []
    for row in rows:
        cells = []
        for x in row:
            if isinstance(x, pd.Timestamp | np.datetime64):
                x = int(pd.Timestamp(x).value // 1_000_000)
            elif hasattr(x, "timestamp") and not isinstance(x, int | float):
                x = round(x.timestamp() * 1000)
            if isinstance(x, float):
                x = None if math.isnan(x) else Close(x)
            cells.append(x)
        out.append(tuple(cells))
    return sorted(
        out, key=lambda r: tuple((x is None, round(x, 4) if isinstance(x, float) else x) for x in r)
    )


def ours(con, sql):
    return norm(con.execute(sql).fetchall())


def ref(duck, sql):
    return norm(duck.execute(sql).fetchall())


# ----------------------------------------------------------------------------- aggregates
def test_whole_table_aggregates_match_duckdb(con, duck):
    got = ours(
        con,
        "SELECT count(*), count(v), sum(n), avg(v), min(v), max(n), spread(v), stddev(v) FROM m",
    )
    want = ref(
        duck,
        "SELECT count(*), count(v), sum(n), avg(v), min(v), max(n), "
        "max(v) - min(v), stddev_pop(v) FROM raw",
    )
    assert got == want


def test_where_on_time_tags_and_columns_matches_duckdb(con, duck):
    lo, hi = T0 + 10 * MINUTE, T0 + 200 * MINUTE
    got = ours(
        con,
        f"SELECT count(*), sum(v) FROM m WHERE ts >= {lo} AND ts < {hi} "
        "AND site = 'north' AND grp IN (1, 2) AND n > -50 AND v IS NOT NULL",
    )
    want = ref(
        duck,
        f"SELECT count(*), sum(v) FROM raw WHERE ts >= {lo} AND ts < {hi} "
        "AND site = 'north' AND grp IN (1, 2) AND n > -50 AND v IS NOT NULL",
    )
    assert got == want and want[0][0] > 0


def test_time_literals_as_strings_bound_the_range(con, duck):
    start = pd.Timestamp(T0 + 30 * MINUTE, unit="ms")
    got = ours(con, f"SELECT count(*) FROM m WHERE ts BETWEEN '{start}' AND '{start}' + 1h")
    want = ref(
        duck, f"SELECT count(*) FROM raw WHERE ts BETWEEN {T0 + 30 * MINUTE} AND {T0 + 90 * MINUTE}"
    )
    assert got == want


def test_group_by_tag_and_partition_by_tbname_match_duckdb(con, duck):
    assert ours(con, "SELECT site, count(*), avg(n) FROM m GROUP BY site") == ref(
        duck, "SELECT site, count(*), avg(n) FROM raw GROUP BY site"
    )
    assert ours(con, "SELECT tbname, grp, max(v), min(n) FROM m PARTITION BY tbname") == ref(
        duck, "SELECT tbname, any_value(grp), max(v), min(n) FROM raw GROUP BY tbname"
    )
    assert ours(con, "SELECT site, grp, sum(n) FROM m GROUP BY site, grp") == ref(
        duck, "SELECT site, grp, sum(n) FROM raw GROUP BY site, grp"
    )


def test_first_last_and_last_row_skip_or_keep_nulls_like_tdengine(con, duck):
    got = ours(
        con,
        "SELECT tbname, first(v), last(v), last_row(v), last_row(ts) FROM m PARTITION BY tbname",
    )
    want = ref(
        duck,
        "SELECT tbname, arg_min(v, ts) FILTER (WHERE v IS NOT NULL), "
        "arg_max(v, ts) FILTER (WHERE v IS NOT NULL), arg_max(v, ts), max(ts) "
        "FROM raw GROUP BY tbname",
    )
    # arg_max(v, ts) ignores rows where v is NULL in DuckDB; LAST_ROW must not.
    raw_last = ref(
        duck,
        "SELECT tbname, v FROM raw r WHERE ts = (SELECT max(ts) FROM raw WHERE tbname = r.tbname)",
    )
    want = [(w[0], w[1], w[2], dict(raw_last)[w[0]], w[4]) for w in want]
    assert got == norm(want)


def test_last_row_star_partitioned_by_tag_uses_the_newest_row(con, duck):
    got = ours(con, "SELECT site, last_row(ts), last_row(n) FROM m PARTITION BY site")
    want = ref(
        duck,
        "SELECT site, ts, n FROM raw r WHERE ts = (SELECT max(ts) FROM raw WHERE site = r.site)",
    )
    assert got == want


def test_percentile_apercentile_and_twa_match_numpy(con, raw):
    df = raw.to_pandas()
    d1 = df[df.tbname == "d1"].sort_values("ts")
    v = d1.v.dropna().to_numpy()
    ((p, ap, med),) = con.execute(
        "SELECT percentile(v, 90), apercentile(v, 25), median(v) FROM d1"
    ).fetchall()
    assert p == pytest.approx(np.percentile(v, 90))
    assert ap == pytest.approx(np.percentile(v, 25))
    assert med == pytest.approx(np.median(v))
    live = d1.dropna(subset=["v"])
    t = live.ts.to_numpy().astype(float)
    expected = np.trapezoid(live.v.to_numpy(), t) / (t[-1] - t[0])
    ((twa,),) = con.execute("SELECT twa(v) FROM d1").fetchall()
    assert twa == pytest.approx(expected)


def test_count_distinct_and_expressions_over_aggregates(con, duck):
    assert ours(con, "SELECT count(distinct site), max(v) - min(v), avg(n) * 2 + 1 FROM m") == ref(
        duck, "SELECT count(distinct site), max(v) - min(v), avg(n) * 2 + 1 FROM raw"
    )


def test_having_filters_groups(con, duck):
    assert ours(con, "SELECT tbname, avg(v) FROM m PARTITION BY tbname HAVING avg(v) > 50") == ref(
        duck, "SELECT tbname, avg(v) FROM raw GROUP BY tbname HAVING avg(v) > 50"
    )


def test_a_single_selector_brings_the_other_columns_of_its_row(con, duck):
    got = ours(con, "SELECT max(v), ts, tbname FROM m")
    want = ref(duck, "SELECT v, ts, tbname FROM raw ORDER BY v DESC NULLS LAST, ts LIMIT 1")
    assert got == want


# ----------------------------------------------------------------------------- windows
def test_interval_windows_per_table_match_duckdb(con, duck):
    got = ours(
        con,
        "SELECT _wstart, tbname, count(*), avg(v), max(n) FROM m PARTITION BY tbname INTERVAL(10m)",
    )
    want = ref(
        duck,
        "SELECT ts // 600000 * 600000 AS w, tbname, count(*), avg(v), max(n) "
        "FROM raw GROUP BY w, tbname",
    )
    assert got == want


def test_interval_with_offset_and_window_end(con, duck):
    got = ours(con, "SELECT _wstart, _wend, sum(n) FROM m INTERVAL(15m, 2m)")
    want = ref(
        duck,
        "SELECT (ts - 120000) // 900000 * 900000 + 120000 AS w, "
        "(ts - 120000) // 900000 * 900000 + 120000 + 900000, sum(n) "
        "FROM raw GROUP BY w",
    )
    assert got == want


def test_sliding_windows_overlap_and_match_a_range_join(con, duck):
    got = ours(
        con, "SELECT _wstart, count(*), min(v) FROM m WHERE tbname = 'd2' INTERVAL(10m) SLIDING(3m)"
    )
    want = ref(
        duck,
        "SELECT w, count(*), min(v) FROM raw, "
        "range(0, 10000000000000, 180000) AS r(w) "
        "WHERE tbname = 'd2' AND ts >= w AND ts < w + 600000 "
        f"AND w BETWEEN {T0 - 3600_000} AND {T0 + 1000 * MINUTE} GROUP BY w",
    )
    assert got == want and len(got) > 20


def test_rows_exactly_on_a_window_edge_open_the_next_window():
    import septet.tsdb as tsdb

    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE e KEEP 36500")
    c.execute("USE e")
    c.execute("CREATE TABLE t (ts TIMESTAMP, v INT)")
    edge = 1_700_000_400_000  # a multiple of 10 minutes
    c.execute(
        f"INSERT INTO t VALUES ({edge - 1}, 1) ({edge}, 2) ({edge + 599_999}, 3) "
        f"({edge + 600_000}, 4)"
    )
    got = c.execute("SELECT _wstart, sum(v) FROM t INTERVAL(10m)").fetchall()
    assert [(int(w.timestamp() * 1000), s) for w, s in got] == [
        (edge - 600_000, 1),
        (edge, 5),
        (edge + 600_000, 4),
    ]
    # Strict and inclusive time bounds cut exactly at the edge.
    assert c.execute(f"SELECT sum(v) FROM t WHERE ts > {edge}").fetchall() == [(7,)]
    assert c.execute(f"SELECT sum(v) FROM t WHERE ts >= {edge}").fetchall() == [(9,)]
    assert c.execute(f"SELECT sum(v) FROM t WHERE ts < {edge + 600_000}").fetchall() == [(6,)]


def _fill_reference(raw, mode, lo, hi, value=None):
    """Per-window avg(v) of d0 over [lo, hi] with pandas, then filled like TDengine."""
    df = raw.to_pandas()
    d = df[(df.tbname == "d0") & (df.ts >= lo) & (df.ts <= hi)]
    w = d.ts // 60_000 * 60_000
    agg = d.groupby(w).v.mean()
    grid = np.arange(lo // 60_000 * 60_000, hi // 60_000 * 60_000 + 1, 60_000)
    s = agg.reindex(grid)
    present = pd.Series(grid).isin(agg.index).to_numpy()
    if mode == "NULL":
        out = s
    elif mode == "VALUE":
        out = s.where(present, value)
    elif mode == "PREV":
        # Missing windows copy the previous non-NULL value; present ones keep their own.
        out = pd.Series(np.where(present, s, _carry(s, present, forward=True)), index=grid)
    elif mode == "NEXT":
        out = pd.Series(np.where(present, s, _carry(s, present, forward=False)), index=grid)
    else:  # LINEAR between the nearest present windows with values
        known = s[present]
        interp = np.interp(grid, known.index[known.notna()], known[known.notna()])
        first = known.index[known.notna()].min()
        last = known.index[known.notna()].max()
        inside = (grid > first) & (grid < last)
        out = pd.Series(np.where(present, s, np.where(inside, interp, np.nan)), index=grid)
    return [(int(t), None if pd.isna(x) else float(x)) for t, x in zip(grid, out, strict=True)]


def _carry(s, present, forward):
    vals = s.to_numpy()
    out = np.full(len(vals), np.nan)
    last = np.nan
    idx = range(len(vals)) if forward else range(len(vals) - 1, -1, -1)
    for i in idx:
        if present[i] and not np.isnan(vals[i]):
            last = vals[i]
        else:
            out[i] = last
    return out


@pytest.mark.parametrize("mode", ["NULL", "VALUE", "PREV", "NEXT", "LINEAR"])
def test_every_fill_mode_over_a_hole_matches_pandas(con, raw, mode):
    df = raw.to_pandas()
    d0 = df[df.tbname == "d0"].ts
    hole = d0.diff().idxmax()  # the 25-minute gap
    lo = int(df.loc[hole - 5, "ts"]) if hole - 5 in df.index else int(d0.min())
    hi = int(df.loc[hole, "ts"]) + 5 * MINUTE
    fill = "VALUE, -1" if mode == "VALUE" else mode
    got = con.execute(
        f"SELECT _wstart, avg(v) FROM d0 WHERE ts >= {lo} AND ts <= {hi} INTERVAL(1m) FILL({fill})"
    ).fetchall()
    got = [(int(w.timestamp() * 1000), x) for w, x in got]
    want = _fill_reference(raw, mode, lo, hi, value=-1.0)
    assert got == [(t, None if x is None else Close(x)) for t, x in want]
    assert len(got) > 25  # the hole's empty windows are there


def test_fill_none_leaves_out_empty_windows(con, duck):
    got = ours(con, "SELECT _wstart, count(*) FROM d0 INTERVAL(1m) FILL(NONE)")
    want = ref(
        duck, "SELECT ts // 60000 * 60000 AS w, count(*) FROM raw WHERE tbname = 'd0' GROUP BY w"
    )
    assert got == want


def test_fill_applies_per_partition(con):
    start = T0 // (5 * MINUTE) * (5 * MINUTE) + 60 * MINUTE  # a window edge
    rows = con.execute(
        "SELECT _wstart, tbname, count(*) FROM m WHERE ts >= "
        f"{start} AND ts < {start + 60 * MINUTE} PARTITION BY tbname "
        "INTERVAL(5m) FILL(VALUE, 0)"
    ).fetchall()
    per_table = {}
    for _, t, _ in rows:
        per_table[t] = per_table.get(t, 0) + 1
    assert per_table == {"d0": 12, "d1": 12, "d2": 12, "d3": 12}


# ----------------------------------------------------------------------------- selections
def test_top_and_bottom_match_a_ranking_in_duckdb(con, duck):
    got = ours(con, "SELECT tbname, ts, top(v, 3) FROM m PARTITION BY tbname")
    want = ref(
        duck,
        "SELECT tbname, ts, v FROM (SELECT *, row_number() OVER (PARTITION BY "
        "tbname ORDER BY v DESC, ts) AS r FROM raw WHERE v IS NOT NULL) WHERE r <= 3",
    )
    assert got == want
    got = ours(con, "SELECT ts, bottom(n, 2) FROM m")
    want = ref(duck, "SELECT ts, n FROM raw WHERE n IS NOT NULL ORDER BY n, ts LIMIT 2")
    assert got == want


def test_diff_per_table_matches_numpy(con, raw):
    df = raw.to_pandas()
    d3 = df[df.tbname == "d3"].sort_values("ts")
    n = d3.n.to_numpy(dtype=float)
    expected = n[1:] - n[:-1]
    got = con.execute("SELECT ts, diff(n) FROM d3").fetch_arrow()
    assert got.num_rows == len(d3) - 1
    values = np.array([np.nan if x is None else x for x in got.column(1).to_pylist()])
    np.testing.assert_array_equal(values, expected)
    positives = con.execute("SELECT diff(n, 1) FROM d3").fetchall()
    assert all(x is None or x >= 0 for (x,) in positives)


# ----------------------------------------------------------------------------- rows
def test_projection_with_expressions_and_operators(con, duck):
    got = ours(
        con,
        "SELECT ts, v * 2 + n, n % 7, abs(n), site || '-' || tbname FROM m "
        "WHERE site LIKE 'n%' AND n BETWEEN -20 AND 20 AND v IS NOT NULL",
    )
    want = ref(
        duck,
        "SELECT ts, v * 2 + n, n % 7, abs(n), site || '-' || tbname "
        "FROM raw WHERE site LIKE 'n%' AND n BETWEEN -20 AND 20 "
        "AND v IS NOT NULL",
    )
    assert got == want


def test_select_star_on_a_super_table_includes_the_tags(con):
    cur = con.execute("SELECT * FROM m LIMIT 1")
    assert [d[0] for d in cur.description] == ["ts", "v", "n", "site", "grp"]


def test_order_by_limit_offset(con, duck):
    got = con.execute(
        "SELECT ts, n FROM m WHERE n IS NOT NULL ORDER BY n DESC, ts LIMIT 5 OFFSET 3"
    ).fetchall()
    want = duck.execute(
        "SELECT ts, n FROM raw WHERE n IS NOT NULL ORDER BY n DESC, ts LIMIT 5 OFFSET 3"
    ).fetchall()
    assert norm(got) == norm(want)
    assert [r[1] for r in got] == [r[1] for r in want]


def test_limit_applies_per_partition_for_windows_and_slimit_picks_partitions(con):
    rows = con.execute(
        "SELECT tbname, _wstart, count(*) FROM m PARTITION BY tbname INTERVAL(10m) LIMIT 2"
    ).fetchall()
    assert [r[0] for r in rows] == ["d0", "d0", "d1", "d1", "d2", "d2", "d3", "d3"]
    rows = con.execute(
        "SELECT tbname, _wstart, count(*) FROM m PARTITION BY tbname "
        "INTERVAL(10m) SLIMIT 2 SOFFSET 1 LIMIT 1"
    ).fetchall()
    assert [r[0] for r in rows] == ["d1", "d2"]


def test_subquery_in_from(con, duck):
    got = ours(con, "SELECT max(a) FROM (SELECT _wstart AS ts, avg(v) AS a FROM m INTERVAL(10m))")
    want = ref(
        duck, "SELECT max(a) FROM (SELECT ts // 600000 AS w, avg(v) AS a FROM raw GROUP BY w)"
    )
    assert got == want


def test_distinct_tags(con, duck):
    assert ours(con, "SELECT DISTINCT site FROM m") == ref(duck, "SELECT DISTINCT site FROM raw")


@pytest.mark.parametrize(
    "sql,fragment",
    [
        ("SELECT nope FROM m", "unknown column 'nope'"),
        ("SELECT v, avg(n) FROM m", "must be inside an aggregate"),
        ("SELECT * FROM missing", "does not exist"),
        ("SELECT avg(site) FROM m", "numeric"),
        ("SELECT _wstart, count(*) FROM m", "INTERVAL"),
        ("SELECT count(*) FROM m INTERVAL(1m) SLIDING(2m)", "SLIDING"),
        ("SELECT top(v, 500) FROM m", "between 1 and 100"),
    ],
)
def test_bad_queries_say_what_is_wrong(con, sql, fragment):
    with pytest.raises(TsdbError, match=fragment):
        con.execute(sql)


def test_precision_us_and_ns_databases_keep_their_units():
    import septet.tsdb as tsdb

    for precision, unit in (("us", 1_000), ("ns", 1_000_000)):
        c = tsdb.connect(":memory:")
        c.execute(f"CREATE DATABASE p PRECISION '{precision}'")
        c.execute("USE p")
        c.execute("CREATE TABLE t (ts TIMESTAMP, v INT)")
        base = 1_700_000_000_000 * unit
        c.execute(f"INSERT INTO t VALUES ({base}, 1) ({base + 1}, 2) ('2023-11-14 22:13:21', 3)")
        table = c.execute("SELECT ts, v FROM t").fetch_arrow()
        assert table.schema.field("ts").type == pa.timestamp(precision)
        assert table.column("ts").cast(pa.int64()).to_pylist() == [
            base,
            base + 1,
            base + 1000 * unit,
        ]
        assert c.execute("SELECT count(*) FROM t INTERVAL(1s)").fetchall() == [(2,), (1,)]


@pytest.mark.parametrize("limit,offset", [(5, 0), (3, 2), (1, 0)])
def test_newest_windows_with_order_by_wstart_desc_limit(con, duck, limit, offset):
    # Answered by reading only the newest stretch of time; must equal a full computation.
    got = con.execute(
        f"SELECT _wstart, max(v), count(*) FROM m WHERE ts < {T0 + 300 * MINUTE} "
        f"INTERVAL(1m) ORDER BY _wstart DESC LIMIT {limit} OFFSET {offset}"
    ).fetchall()
    want = duck.execute(
        f"SELECT ts // 60000 * 60000 AS w, max(v), count(*) FROM raw "
        f"WHERE ts < {T0 + 300 * MINUTE} GROUP BY w ORDER BY w DESC "
        f"LIMIT {limit} OFFSET {offset}"
    ).fetchall()
    assert norm(got) == norm(want) and len(got) == limit


def test_aggregates_use_block_statistics_without_decoding_and_stay_exact(raw, monkeypatch):
    import duckdb

    import septet.tsdb as tsdb
    from septet.tsdb import segment

    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE s KEEP 36500 MAXROWS 50")
    c.execute("USE s")
    c.execute("CREATE STABLE m (ts TIMESTAMP, v DOUBLE, n INT) TAGS (site VARCHAR(16), grp INT)")
    c.insert_arrow("m", raw)
    c.flush()
    c.insert_arrow("m", raw.slice(0, 20))  # memtable rows overlapping some blocks
    decoded = []
    original = segment.SegmentReader.read_column

    def counting(self, block, col_id, type_, compressor):
        decoded.append(col_id)
        return original(self, block, col_id, type_, compressor)

    monkeypatch.setattr(segment.SegmentReader, "read_column", counting)
    as_numpy = segment.SegmentReader.read_values

    def counting_numpy(self, block, col_id, dtype):
        decoded.append(col_id)
        return as_numpy(self, block, col_id, dtype)

    monkeypatch.setattr(segment.SegmentReader, "read_values", counting_numpy)
    lo, hi = T0 + 20 * MINUTE, T0 + 400 * MINUTE
    sql = (
        f"SELECT site, count(*), count(v), sum(n), min(v), max(n), avg(v), spread(v) "
        f"FROM m WHERE ts >= {lo} AND ts <= {hi} GROUP BY site"
    )
    got = norm(c.execute(sql).fetchall())
    d = duckdb.connect()
    d.register("m", raw)
    want = norm(d.execute(sql.replace("spread(v)", "max(v) - min(v)")).fetchall())
    assert got == want
    blocks_in_range = 4 * 300 // 50 * 2  # two columns
    # Only the blocks cut by the range ends or overlapped by memtable rows are decoded.
    assert len(decoded) <= blocks_in_range // 4, decoded


# ----------------------------------------------------------------------------- tag index
TAG_CONDITIONS = [
    "host = 'h3'",
    "'h3' = host",
    "host = 'H3'",
    "host = 'nowhere'",
    "host IN ('h1', 'h5', 'nowhere')",
    "host IN ('h2', 'h2')",
    "host IN ('nowhere')",
    "tbname = 't7'",
    "tbname IN ('t1', 't2', 't40')",
    "zone = 'z1'",
    "host = 'h3' AND rack = 2",
    "host IN ('h1', 'h2', 'h4') AND zone = 'z0'",
    "host = 'h1' AND host = 'h2'",
    "host = 'h3' OR host = 'h4'",
    "host != 'h3'",
    "host IN ('h1', NULL)",
    "host NOT IN ('h1', 'h2')",
    "host LIKE 'h1%'",
    "rack IN (1, 2)",
    "rack = 1 AND tbname IN ('t0', 't1', 't2', 't3')",
]


def test_the_tag_index_picks_the_tables_that_evaluating_the_tag_condition_picks(monkeypatch):
    """``tag = 'text'`` and ``tag IN (...)`` on string tags and tbname are looked up in an index
    of the super table's sub-tables: every condition gives the same rows with the index as by
    evaluating it over the tags of every sub-table (NULL tags, duplicate values, case, values
    that no table has, mixes with conditions that are not looked up), also after a tag changes."""
    import septet.tsdb as tsdb
    from septet.tsdb import query

    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE ix KEEP 36500")
    c.execute("USE ix")
    c.execute(
        "CREATE STABLE s (ts TIMESTAMP, v INT) TAGS (host VARCHAR(16), zone NCHAR(8), rack INT)"
    )
    for i in range(60):
        host = "NULL" if i % 9 == 0 else f"'h{i % 20}'"
        c.execute(
            f"INSERT INTO t{i} USING s TAGS ({host}, 'z{i % 3}', {i % 4}) VALUES ({T0 + i}, {i})"
        )
    indexed = query._indexed
    spy, looked_up = spy_on(indexed)

    def by_index(where):
        monkeypatch.setattr(query, "_indexed", spy)
        return sorted(c.execute(f"SELECT tbname, v FROM s WHERE {where}").fetchall())

    def by_evaluation(where):
        monkeypatch.setattr(query, "_indexed", lambda *args: None)
        return sorted(c.execute(f"SELECT tbname, v FROM s WHERE {where}").fetchall())

    def grouped(where):  # the tags of the tables kept, as later steps read them
        sql = f"SELECT host, zone, count(*), sum(v) FROM s WHERE {where} GROUP BY host, zone"
        return sorted(c.execute(sql).fetchall(), key=repr)

    for stage in ("before", "after"):
        for where in TAG_CONDITIONS:
            assert by_index(where) == by_evaluation(where), (stage, where)
            monkeypatch.setattr(query, "_indexed", indexed)
            with_index = grouped(where)
            monkeypatch.setattr(query, "_indexed", lambda *args: None)
            assert with_index == grouped(where), (stage, where)
        if stage == "before":
            c.execute("ALTER TABLE t3 SET TAG host = 'h9'")
            c.execute("ALTER TABLE t9 SET TAG host = 'h3'")
    assert sum(looked_up) >= 20  # the index answered most of them
    assert by_index("host = 'h3'") == [("t23", 23), ("t43", 43), ("t9", 9)]
    assert by_index("host IN ('h1', 'h6') AND rack = 2") == [("t26", 26), ("t46", 46), ("t6", 6)]


# ----------------------------------------------------------------------------- plain windows
PLAIN_WINDOWS = [
    "SELECT _wstart, max(v) FROM m INTERVAL(10m)",
    "SELECT _wstart AS w, min(v), max(n), count(*), count(v) FROM m INTERVAL(7m)",
    "SELECT _wstart, avg(v), sum(n), spread(v), sum(v) FROM m WHERE site = 'north' INTERVAL(1h)",
    "SELECT max(v), _wstart, max(v) FROM m WHERE tbname IN ('d1', 'd3') INTERVAL(90s)",
    "SELECT _wstart, avg(n) AS a, count(n) FROM d2 INTERVAL(5m)",
    f"SELECT _wstart, sum(v) FROM m WHERE ts >= {T0 + 40 * MINUTE} AND ts < {T0 + 200 * MINUTE} "
    "INTERVAL(1m)",
    f"SELECT _wstart, max(v) FROM m WHERE site IN ('south', 'east') AND ts > {T0} INTERVAL(3m)",
    f"SELECT _wstart, count(*) FROM m WHERE ts < {T0 - 1} INTERVAL(1m)",
    "SELECT _wstart, max(v) FROM m WHERE site = 'east' AND tbname = 'd3' INTERVAL(1m)",
    "SELECT _wstart, min(n), max(n) FROM m INTERVAL(1d)",
]


@pytest.mark.parametrize("sql", PLAIN_WINDOWS)
def test_plain_windows_taken_straight_from_the_partials_equal_the_general_finish(
    con, monkeypatch, sql
):
    """Windows with no FILL, HAVING, ordering or limits whose items are _wstart and aggregate
    calls are answered from the partials' columns directly: the same table (names, types,
    values, NULLs) as evaluating each item over the groups."""
    from septet.tsdb import query

    spy, taken = spy_on(query._window_columns)
    monkeypatch.setattr(query, "_window_columns", spy)
    direct = con.execute(sql).fetch_arrow()
    assert taken == [True]
    monkeypatch.setattr(query, "_window_columns", lambda *args: None)
    general = con.execute(sql).fetch_arrow()
    assert direct.equals(general), (direct.schema, general.schema)
    assert direct.schema == general.schema


@pytest.mark.parametrize("cut", [False, True])
def test_windows_of_a_single_block_with_gaps_and_nulls_match_pandas(cut):
    """One table, one segment block (the one-piece path of windowagg), irregular rows with a
    gap of empty windows and NULLs, whole or cut by a time range."""
    import septet.tsdb as tsdb

    rng = np.random.default_rng(17)
    ts = T0 + np.cumsum(rng.integers(1, 40, size=300)) * 1000
    ts[150:] += 30 * MINUTE  # ten empty 3-minute windows
    v = np.round(rng.normal(size=300), 3)
    valid = rng.random(300) > 0.15
    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE one KEEP 36500")
    c.execute("USE one")
    c.execute("CREATE TABLE t (ts TIMESTAMP, v DOUBLE)")
    c.insert_arrow("t", pa.table({"ts": pa.array(ts), "v": pa.array(v, mask=~valid)}))
    c.flush()
    lo, hi = (int(ts[20]) + 500, int(ts[280])) if cut else (int(ts[0]), int(ts[-1]))
    got = c.execute(
        f"SELECT _wstart, count(*), count(v), min(v), max(v), sum(v), avg(v) FROM t "
        f"WHERE ts >= {lo} AND ts <= {hi} INTERVAL(3m)"
    ).fetchall()
    keep = (ts >= lo) & (ts <= hi)
    df = pd.DataFrame({"w": ts[keep] // 180_000 * 180_000, "v": np.where(valid, v, np.nan)[keep]})
    g = df.groupby("w")["v"]
    want = pd.DataFrame({"n": g.size(), "c": g.count(), "lo": g.min(), "hi": g.max()})
    want["s"], want["a"] = g.sum(min_count=1), g.mean()
    assert len(got) == len(want) and len(got) < (hi - lo) // 180_000 + 1  # gaps left out
    for row, (w, ref) in zip(got, want.iterrows(), strict=True):
        assert int(pd.Timestamp(row[0]).value // 1_000_000) == w
        assert row[1:3] == (ref.n, ref.c)
        for x, y in zip(row[3:], (ref.lo, ref.hi, ref.s, ref.a), strict=True):
            assert (x is None and np.isnan(y)) or x == pytest.approx(y, rel=1e-12)


def spy_on(fn):
    """``fn`` wrapped, and a list that says for each call whether it found something (its
    answer not None: a fast path taken rather than declined)."""
    found: list[bool] = []

    def spy(*args):
        out = fn(*args)
        found.append(out is not None)
        return out

    return spy, found
