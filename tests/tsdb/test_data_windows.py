"""STATE_WINDOW, SESSION and EVENT_WINDOW: windows that follow the data, per partition, in
time order. STATE and SESSION are checked against DuckDB (gaps-and-islands with window
functions), EVENT_WINDOW against a plain loop over the rows."""

import numpy as np
import pytest

from septet.tsdb.errors import TsdbError

from .conftest import T0
from .test_queries import norm, ours, ref

ISLANDS = """
SELECT tbname, min(ts), max(ts), max(ts) - min(ts), count(*), sum(v), max(n) FROM (
  SELECT *, sum(new) OVER (PARTITION BY tbname ORDER BY ts) AS island FROM (
    SELECT *, CASE WHEN {change} THEN 1 ELSE 0 END AS new FROM (
      SELECT *, lag({key}) OVER (PARTITION BY tbname ORDER BY ts) AS prev FROM raw {where}
    )
  )
) GROUP BY tbname, island
"""


def test_state_window_groups_runs_of_equal_state_and_skips_null_states(con, duck):
    got = ours(
        con,
        "SELECT tbname, _wstart, _wend, _wduration, count(*), sum(v), max(n) FROM m "
        "PARTITION BY tbname STATE_WINDOW(n > 0)",
    )
    want = ref(
        duck,
        ISLANDS.format(
            key="n > 0", change="prev IS NULL OR prev <> (n > 0)", where="WHERE n IS NOT NULL"
        ),
    )
    assert got == want and len(got) > 100


def test_state_window_on_an_integer_column_of_one_table(con, duck):
    got = ours(con, "SELECT tbname, _wstart, _wend, _wduration, count(*), sum(v), max(n) FROM d2 "
               "STATE_WINDOW(grp)")  # fmt: skip
    want = ref(
        duck,
        "SELECT tbname, min(ts), max(ts), max(ts) - min(ts), count(*), sum(v), max(n) FROM raw "
        "WHERE tbname = 'd2' GROUP BY tbname",
    )
    assert got == want


@pytest.mark.parametrize("gap_s", [1, 40, 90, 3600])
def test_session_window_splits_where_the_gap_exceeds_the_tolerance(con, duck, gap_s):
    got = ours(
        con,
        "SELECT tbname, _wstart, _wend, _wduration, count(*), sum(v), max(n) FROM m "
        f"PARTITION BY tbname SESSION(ts, {gap_s}s)",
    )
    want = ref(
        duck,
        ISLANDS.format(key="ts", change=f"prev IS NULL OR ts - prev > {gap_s * 1000}", where=""),
    )
    assert got == want


def _event_windows(ts, v, start, end):
    """The reference: walk the rows, open at START, close at the first END from there."""
    out, i = [], 0
    while i < len(ts):
        if start(v[i]):
            j = i
            while j < len(ts) and not end(v[j]):
                j += 1
            if j == len(ts):
                break  # never closed: left out
            out.append((i, j))
            i = j + 1
        else:
            i += 1
    return out


def test_event_window_opens_on_start_and_closes_on_the_first_end(con, raw):
    got = ours(
        con,
        "SELECT tbname, _wstart, _wend, count(*), sum(n) FROM m PARTITION BY tbname "
        "EVENT_WINDOW START WITH v > 60 END WITH v < 45",
    )
    want = []
    for name in ("d0", "d1", "d2", "d3"):
        rows = raw.filter(raw.column("tbname").to_numpy(zero_copy_only=False) == name)
        order = np.argsort(rows.column("ts").to_numpy())
        ts = rows.column("ts").to_numpy()[order]
        v = rows.column("v").to_pylist()
        v = [v[k] for k in order]
        n = rows.column("n").to_pylist()
        n = [n[k] for k in order]
        windows = _event_windows(
            ts, v, lambda x: x is not None and x > 60, lambda x: x is not None and x < 45
        )
        for i, j in windows:
            live = [x for x in n[i : j + 1] if x is not None]
            want.append((name, int(ts[i]), int(ts[j]), j - i + 1, sum(live) if live else None))
    assert got == norm(want) and len(got) > 20


def test_a_window_of_one_row_and_bad_window_clauses():
    import septet.tsdb as tsdb

    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE d KEEP 36500")
    c.execute("USE d")
    c.execute("CREATE TABLE t (ts TIMESTAMP, v DOUBLE, s VARCHAR(4))")
    c.execute(f"INSERT INTO t VALUES ({T0}, 1, 'a') ({T0 + 1000}, 9, 'a') ({T0 + 2000}, 2, 'b')")
    got = c.execute("SELECT _wstart, count(*) FROM t EVENT_WINDOW START WITH v > 5 END WITH v > 5")
    assert [r[1] for r in got.fetchall()] == [1]
    assert [r[0] for r in c.execute("SELECT count(*) FROM t STATE_WINDOW(s)").fetchall()] == [2, 1]
    for sql, fragment in [
        ("SELECT count(*) FROM t STATE_WINDOW(v)", "not a float"),
        ("SELECT count(*) FROM t SESSION(v, 1s)", "timestamp column"),
        ("SELECT count(*) FROM t STATE_WINDOW(s) FILL(NULL)", "syntax error"),
        ("SELECT count(*) FROM t SESSION(ts, 5)", "duration"),
        ("SELECT count(*) FROM t EVENT_WINDOW START v > 1 END WITH v < 1", "WITH"),
    ]:
        with pytest.raises(TsdbError, match=fragment):
            c.execute(sql)
