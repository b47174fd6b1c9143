"""The storage engine: memtable + segments, out-of-order merge, duplicate timestamps,
flush and reopen, time partitions and KEEP retention, compaction, the last-row cache, and
per-block statistics."""

import time

import numpy as np
import pyarrow as pa
import pytest

import septet.tsdb as tsdb
from septet.tsdb.catalog import DatabaseOptions
from septet.tsdb.engine import Engine

NOW_MS = int(time.time() * 1000) // 1000 * 1000
DAY = 86_400_000


def make(path, **options):
    con = tsdb.connect(path, **options)
    con.execute("CREATE DATABASE IF NOT EXISTS db KEEP 30 DURATION 1")
    con.execute("USE db")
    con.execute(
        "CREATE STABLE IF NOT EXISTS m (ts TIMESTAMP, v DOUBLE, n INT) TAGS (site VARCHAR(8))"
    )
    return con


def rows(con, sql):
    return con.execute(sql).fetchall()


def test_rows_survive_close_and_reopen(tmp_path):
    con = make(tmp_path)
    con.execute(
        f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS}, 1.5, 1) ({NOW_MS + 1000}, 2.5, 2)"
    )
    con.close()
    con = tsdb.connect(tmp_path, "db")
    assert rows(con, "SELECT v, n FROM d1") == [(1.5, 1), (2.5, 2)]


def test_unflushed_rows_are_recovered_from_the_wal(tmp_path):
    con = make(tmp_path)
    con.execute(f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS}, 1.5, 1)")
    # No close: the process "dies" with the row only in the WAL and the memtable.
    con.engine.wal.close()
    con2 = tsdb.connect(tmp_path, "db")
    assert rows(con2, "SELECT v FROM d1") == [(1.5,)]


def test_out_of_order_rows_come_back_sorted_across_memtable_and_segments(tmp_path):
    con = make(tmp_path, max_segments=3)
    stamps = NOW_MS + np.random.default_rng(1).permutation(300) * 1000
    for chunk in np.array_split(stamps, 6):
        con.insert_arrow(
            "m",
            pa.table(
                {
                    "tbname": ["d1"] * len(chunk),
                    "site": ["a"] * len(chunk),
                    "ts": pa.array(chunk),
                    "v": chunk.astype(float),
                }
            ),
        )
        con.flush()  # several segments, then compactions
    con.insert_arrow(
        "m", pa.table({"tbname": ["d1"], "site": ["a"], "ts": [NOW_MS - 5000], "v": [0.0]})
    )
    got = con.execute("SELECT ts, v FROM d1").fetch_arrow()
    ts = got.column("ts").cast(pa.int64()).to_numpy()
    assert (np.diff(ts) > 0).all() and len(ts) == 301
    assert got.column("v").to_pylist()[1:] == sorted(stamps.astype(float).tolist())


def test_a_duplicate_timestamp_replaces_the_row_wherever_the_old_one_lives(tmp_path):
    con = make(tmp_path)
    con.execute(
        f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS}, 1.0, 1) ({NOW_MS + 1000}, 2.0, 2)"
    )
    con.flush()  # the old row is in a segment now
    con.execute(f"INSERT INTO d1 VALUES ({NOW_MS}, 10.0, NULL)")
    assert rows(con, "SELECT v, n FROM d1") == [(10.0, None), (2.0, 2)]
    con.execute(f"INSERT INTO d1 VALUES ({NOW_MS + 1000}, 20.0, 3) ({NOW_MS + 1000}, 30.0, 4)")
    assert rows(con, "SELECT v, n FROM d1") == [(10.0, None), (30.0, 4)]
    con.close()
    con = tsdb.connect(tmp_path, "db")
    assert rows(con, "SELECT v, n FROM d1") == [(10.0, None), (30.0, 4)]
    assert rows(con, "SELECT count(*) FROM d1") == [(2,)]


def test_each_duration_gets_its_own_partition_and_keep_drops_whole_partitions(tmp_path):
    con = make(tmp_path)
    old = NOW_MS - 29 * DAY  # inside KEEP 30 now
    con.execute(f"INSERT INTO d1 USING m TAGS ('a') VALUES ({old}, 1.0, 1) ({NOW_MS}, 2.0, 2)")
    con.close()
    partitions = sorted(p.name for p in (tmp_path / "db").iterdir())
    assert len(partitions) == 2  # DURATION 1 day: two days, two partition folders
    # Shrink KEEP below the old row's age: reopening and flushing drops that partition.
    engine = Engine(tmp_path)
    engine.dbs["db"].options.keep_days = 10
    engine.flush()
    engine.close()
    con = tsdb.connect(tmp_path, "db")
    assert rows(con, "SELECT v FROM d1") == [(2.0,)]
    assert len(list((tmp_path / "db").iterdir())) == 1


def test_rows_older_than_keep_are_refused_with_a_clear_error(tmp_path):
    con = make(tmp_path)
    with pytest.raises(tsdb.TsdbError, match="KEEP"):
        con.execute(f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS - 40 * DAY}, 1.0, 1)")


def test_compaction_keeps_at_most_max_segments_per_partition(tmp_path):
    con = make(tmp_path, max_segments=2)
    for i in range(5):
        con.execute(f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS + i * 1000}, {i}, {i})")
        con.flush()
    (part,) = list((tmp_path / "db").iterdir())
    assert len(list(part.glob("*.seg"))) <= 2
    assert rows(con, "SELECT count(*), sum(n) FROM d1") == [(5, 10)]


def test_last_row_cache_follows_writes_and_deletes(tmp_path):
    con = make(tmp_path)
    con.execute(
        f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS}, 1.0, 1) ({NOW_MS + 2000}, 3.0, NULL)"
    )
    assert rows(con, "SELECT last_row(v), last_row(n) FROM d1") == [(3.0, None)]
    assert rows(con, "SELECT last(n) FROM d1") == [(1,)]
    con.execute(f"INSERT INTO d1 VALUES ({NOW_MS + 1000}, 2.0, 2)")  # older: cache unchanged
    assert rows(con, "SELECT last_row(v) FROM d1") == [(3.0,)]
    con.execute(f"INSERT INTO d1 VALUES ({NOW_MS + 2000}, 4.0, 4)")  # same ts: replaces
    assert rows(con, "SELECT last_row(v) FROM d1") == [(4.0,)]
    con.execute(f"DELETE FROM d1 WHERE ts >= {NOW_MS + 1500}")
    assert rows(con, "SELECT last_row(v) FROM d1") == [(2.0,)]


def test_block_statistics_answer_without_decoding_and_agree_with_the_data(tmp_path):
    engine = Engine(tmp_path)
    engine.create_database("db", DatabaseOptions(block_rows=100), False)
    engine.create_table("db", "t", [("ts", "TIMESTAMP"), ("v", "DOUBLE")], False)
    uid = engine.dbs["db"].tables["t"].uid
    v = np.random.default_rng(0).normal(size=1000)
    ts = NOW_MS + np.arange(1000) * 1000
    engine.insert([(uid, pa.table({"ts": ts, "c1": v}))])
    engine.flush()
    rest, stats = engine.scan(uid, [1], int(ts[50]), int(ts[949]), stats_col=1)
    assert len(stats) == 8  # blocks 1..8 lie inside; blocks 0 and 9 are cut by the range
    count = sum(s[0] for s in stats) + rest.num_rows
    total = sum(s[3] for s in stats) + sum(rest.column("c1").to_pylist())
    assert count == 900
    assert total == pytest.approx(v[50:950].sum())
    assert max(s[2] for s in stats) == pytest.approx(max(v[100:900]))
    engine.close()


def test_drop_table_then_recreate_does_not_resurrect_old_rows(tmp_path):
    con = make(tmp_path)
    con.execute(f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS}, 1.0, 1)")
    con.execute("DROP TABLE d1")
    con.execute(f"INSERT INTO d1 USING m TAGS ('b') VALUES ({NOW_MS + 1000}, 2.0, 2)")
    con.close()
    con = tsdb.connect(tmp_path, "db")
    assert rows(con, "SELECT v, site FROM d1") == [(2.0, "b")]


def test_alter_add_and_drop_column_keeps_old_rows_readable(tmp_path):
    con = make(tmp_path)
    con.execute(f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS}, 1.0, 1)")
    con.flush()
    con.execute("ALTER STABLE m ADD COLUMN extra BIGINT")
    con.execute(f"INSERT INTO d1 VALUES ({NOW_MS + 1000}, 2.0, 2, 7)")
    assert rows(con, "SELECT extra FROM d1") == [(None,), (7,)]
    con.execute("ALTER STABLE m DROP COLUMN n")
    con.execute("ALTER STABLE m ADD COLUMN n INT")  # same name, new column: old values gone
    assert rows(con, "SELECT n FROM d1") == [(None,), (None,)]
    con.close()
    con = tsdb.connect(tmp_path, "db")
    assert rows(con, "SELECT v, extra, n FROM d1") == [(1.0, None, None), (2.0, 7, None)]


def test_memory_mode_flushes_into_memory_segments():
    con = make(":memory:")
    con.execute(f"INSERT INTO d1 USING m TAGS ('a') VALUES ({NOW_MS}, 1.0, 1)")
    con.flush()
    con.execute(f"INSERT INTO d1 VALUES ({NOW_MS + 1000}, 2.0, 2)")
    assert rows(con, "SELECT sum(v) FROM m") == [(3.0,)]


def test_block_statistics_are_not_used_for_blocks_a_wide_memtable_chunk_overlaps(tmp_path):
    engine = Engine(tmp_path)
    engine.create_database("db", DatabaseOptions(block_rows=10), False)
    engine.create_table("db", "t", [("ts", "TIMESTAMP"), ("v", "DOUBLE")], False)
    uid = engine.dbs["db"].tables["t"].uid
    ts = NOW_MS + np.arange(100) * 1000
    engine.insert([(uid, pa.table({"ts": ts, "c1": np.ones(100)}))])
    engine.flush()
    # Two rows far apart replace values inside blocks 2 and 7: one chunk spans many blocks.
    engine.insert([(uid, pa.table({"ts": [ts[25], ts[75]], "c1": [5.0, 7.0]}))])
    rest, stats = engine.scan(uid, [1], None, None, stats_col=1)
    total = sum(s[3] for s in stats) + sum(rest.column("c1").to_pylist())
    assert total == 100 - 2 + 5 + 7
    engine.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_super_table_inserts_kept_whole_read_back_as_a_reference_model_says(tmp_path, seed):
    """Super-table inserts stay whole in the memtable until a read or flush splits them per
    sub-table (Engine._settle). Random inserts (out of order, duplicate timestamps, a table
    in several runs of one insert, names differing in case) with reads, flushes and a crash
    in between give what a dict per table (newest write wins) gives."""
    rng = np.random.default_rng(seed)
    con = make(tmp_path, memtable_bytes=1 << 30)
    model: dict[str, dict[int, float]] = {}
    names = ["d0", "d1", "D1", "d2", "d3"]
    for step in range(40):
        n = int(rng.integers(1, 30))
        tb = [names[i] for i in rng.integers(0, len(names), n)]
        ts = (NOW_MS + rng.integers(0, 60, n) * 1000).tolist()
        v = rng.normal(size=n).round(3).tolist()
        con.insert_arrow("m", pa.table({"tbname": tb, "ts": ts, "v": v, "site": ["x"] * n}))
        for t, s, x in zip(tb, ts, v, strict=True):
            model.setdefault(t.lower(), {})[s] = x
        action = rng.integers(0, 6)
        if action == 0:
            con.engine.flush()
        elif action == 1:  # read one table: every pending insert is split
            t = names[int(rng.integers(0, len(names)))].lower()
            if t in model:
                got = rows(con, f"SELECT ts, v FROM {t}")
                assert [(int(a.timestamp() * 1000), b) for a, b in got] == sorted(model[t].items())
        if step == 25:  # crash: pending inserts come back from the WAL
            con.engine.wal.close()
            con = tsdb.connect(tmp_path, "db")
    for t, expected in model.items():
        got = rows(con, f"SELECT ts, v FROM {t}")
        assert [(int(a.timestamp() * 1000), b) for a, b in got] == sorted(expected.items()), t
    total = sum(len(x) for x in model.values())
    assert rows(con, "SELECT count(*) FROM m") == [(total,)]
