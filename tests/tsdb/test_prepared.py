"""Planned SELECT shapes (prepared.py) answer byte for byte what the general path answers."""

import numpy as np
import pytest

from septet.tsdb import prepared
from septet.tsdb.server import Server

T0 = 1_700_000_000_000
MIN = 60_000


@pytest.fixture()
def server(tmp_path):
    """A super table of 12 hosts (NULLs, an INT column, rows in segments, in the memtable and
    rewritten), and a second database with the same table name."""
    s = Server(tmp_path / "data", fsync="off")
    root = s.users.authenticate("root", "taosdata")
    s.sql = lambda text, db="db": s.run_sql(root, text, db)
    s.sql("CREATE DATABASE db PRECISION 'ms' KEEP 36500")
    s.sql("CREATE DATABASE other PRECISION 'ms' KEEP 36500")
    for db in ("db", "other"):
        s.sql(
            f"CREATE STABLE {db}.cpu (ts TIMESTAMP, u DOUBLE, s DOUBLE, n INT) "
            "TAGS (hostname VARCHAR(32), region VARCHAR(16), rack INT)"
        )
    rng = np.random.default_rng(2)
    for part in range(3):
        for h in range(12):
            region = "NULL" if h == 11 else f"'r{h % 3}'"
            ts = T0 + np.sort(rng.choice(4 * 60, size=90, replace=False)) * 20_000 + part * 7_000
            u = np.round(rng.normal(50, 20, size=ts.size), 3)
            rows = []
            for t, v, k in zip(ts.tolist(), u.tolist(), range(ts.size), strict=True):
                uv = "NULL" if (k + h) % 13 == 0 else repr(v)
                nv = "NULL" if (k + h) % 7 == 0 else str(k - 40)
                rows.append(f"({t}, {uv}, {round(v / 3, 2)}, {nv})")
            s.sql(
                f"INSERT INTO h{h} USING cpu TAGS ('host_{h}', {region}, {h % 4}) "
                f"VALUES {' '.join(rows)}"
            )
        if part < 2:
            s.engine.flush()  # two parts in segments, the last in the memtable
    yield s
    s.close()


SHAPES = [
    "SELECT _wstart, max(u) FROM cpu WHERE hostname IN ({h1}) AND ts >= {a} AND ts < {b} "
    "INTERVAL(1m)",
    "SELECT _wstart, max(u), min(s), avg(n), sum(n), count(*), count(u), spread(u) FROM cpu "
    "WHERE hostname IN ({h3}) AND ts >= {a} AND ts < {b} INTERVAL(5m)",
    "SELECT max(u) AS top, _wstart AS w, sum(u) FROM cpu WHERE hostname = {h} "
    "AND ts > {a} AND ts <= {b} INTERVAL(7m)",
    "SELECT _wstart, avg(u) FROM cpu WHERE {h} = hostname AND {a} <= ts AND ts < {b} INTERVAL(1h)",
    "SELECT _wstart, count(n) FROM cpu WHERE region = {r} AND ts BETWEEN {a} AND {b} INTERVAL(2m)",
    "SELECT _wstart, min(n), max(n) FROM cpu WHERE tbname IN ({t3}) AND region IN ({r}, {r2}) "
    "INTERVAL(10m)",
    "SELECT _wstart, max(s) FROM cpu WHERE hostname IN ({h3}) INTERVAL(30s)",
    "SELECT _wstart, max(u) FROM db.cpu WHERE hostname = {h} AND ts = {a} INTERVAL(1m)",
    "SELECT _wstart, max(u), sum(n) FROM h3 WHERE ts >= {a} INTERVAL(3m)",
]


def _literals(rng, k):
    hosts = [f"'host_{i}'" for i in rng.choice(13, size=3, replace=False)]  # host_12: none
    a = T0 + int(rng.integers(0, 60)) * MIN + int(rng.integers(0, 3)) * 20_000
    return {
        "h": hosts[0],
        "h1": hosts[0],
        "h3": ", ".join(hosts),
        "t3": ", ".join(f"'h{i}'" for i in rng.choice(12, size=3, replace=False)),
        "r": f"'r{k % 4}'",  # r3: no such region
        "r2": f"'r{(k + 1) % 3}'",
        "a": a,
        "b": a + int(rng.integers(1, 120)) * MIN,
    }


def _general(server, sql, db="db"):
    real = server.plans.run
    server.plans.run = lambda *args: None
    try:
        return server.sql(sql, db)
    finally:
        server.plans.run = real


@pytest.mark.parametrize("shape", SHAPES)
def test_a_planned_shape_answers_what_the_general_path_answers(server, shape):
    rng = np.random.default_rng(len(shape))
    hits = server.plans.hits
    for k in range(8):
        sql = shape.format(**_literals(rng, k))
        assert server.sql(sql) == _general(server, sql), sql
    assert server.plans.hits > hits  # the plan answered (some texts may match no table)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT _wstart, max(u) FROM cpu WHERE hostname = 'host_1' INTERVAL(1m) FILL(NULL)",
        "SELECT _wstart, max(u) FROM cpu WHERE hostname = 'host_1' INTERVAL(1m) LIMIT 3",
        "SELECT _wstart, max(u) FROM cpu WHERE hostname = 'host_1' AND u > 40 INTERVAL(1m)",
        "SELECT _wstart, max(u) FROM cpu WHERE rack = 1 INTERVAL(1m)",
        "SELECT _wstart, max(u) FROM cpu WHERE hostname != 'host_1' INTERVAL(1m)",
        "SELECT _wstart, hostname, max(u) FROM cpu PARTITION BY hostname INTERVAL(1h)",
        "SELECT _wstart, max(u) + 1 FROM cpu WHERE hostname = 'host_2' INTERVAL(1m)",
        f"SELECT _wstart, max(u) FROM cpu WHERE hostname = 'host_2' AND ts > {T0}.5 INTERVAL(1m)",
        "SELECT max(u) FROM cpu WHERE hostname = 'host_2'",
    ],
)
def test_other_shapes_are_not_planned_and_answer_the_same(server, sql):
    for _ in range(2):
        assert server.sql(sql) == _general(server, sql)
    assert not any(server.plans._plans.values())


def test_plans_follow_the_catalog_the_database_and_the_table_limit(server, monkeypatch):
    sql = "SELECT _wstart, max(u), count(*) FROM cpu WHERE hostname IN ('host_1', 'host_9') "
    sql += "INTERVAL(10m)"
    first = server.sql(sql)
    assert server.sql(sql) == first and server.plans.hits == 1
    # Another database with its own (empty) table of that name: its own plan.
    assert server.sql(sql, "other") == _general(server, sql, "other")
    # A tag changes and a table appears: the plan made before answers nothing stale.
    server.sql("ALTER TABLE h9 SET TAG hostname = 'host_99'")
    server.sql(
        f"INSERT INTO h20 USING cpu TAGS ('host_9', 'r0', 1) VALUES ({T0 + 5}, 1000.5, 1.5, 3)"
    )
    changed = server.sql(sql)
    assert changed != first and changed == _general(server, sql)
    hits = server.plans.hits
    assert server.sql(sql) == changed and server.plans.hits == hits + 1  # planned again
    # Past MAX_TABLES tables the general path answers.
    monkeypatch.setattr(prepared, "MAX_TABLES", 1)
    assert server.sql(sql) == changed and server.plans.hits == hits + 1


def test_a_read_only_user_gets_planned_answers_too(server):
    server.sql("CREATE USER viewer PASS 'secret12' READONLY")
    viewer = server.users.authenticate("viewer", "secret12")
    sql = "SELECT _wstart, max(u) FROM cpu WHERE hostname = 'host_4' INTERVAL(15m)"
    want = server.sql(sql)
    assert server.run_sql(viewer, sql, "db") == want
    assert server.run_sql(viewer, sql, "db") == want and server.plans.hits >= 1
