"""Continuous queries (CREATE STREAM) and subscriptions (CREATE TOPIC + consumers)."""

import httpx
import numpy as np
import pytest

import septet.tsdb as tsdb
from septet.tsdb.topics import Consumer

from .server_util import ThreadServer

T0 = 1_700_000_000_000
ROOT = ("root", "taosdata")
QUERY = "SELECT _wstart, avg(v), count(*), max(n), spread(v) FROM m INTERVAL(1m) SLIDING(30s)"


def _random_inserts(con, rng, batches=25):
    for i in range(batches):
        ts = T0 + rng.integers(-600_000, 1_200_000, size=int(rng.integers(1, 8)))
        rows = " ".join(f"({t}, {rng.normal():.6f}, {int(rng.integers(100))})" for t in ts)
        con.execute(f"INSERT INTO d{i % 3} USING m TAGS ({i % 3}) VALUES {rows}")


def test_stream_target_equals_the_query_run_by_hand(tmp_path):
    con = tsdb.connect(tmp_path)
    con.execute("CREATE DATABASE db; USE db")
    con.execute("CREATE STABLE m (ts TIMESTAMP, v DOUBLE, n INT) TAGS (g INT)")
    con.execute(f"INSERT INTO d0 USING m TAGS (0) VALUES ({T0}, 1.0, 1)")  # history
    con.execute(f"CREATE STREAM s1 INTO agg AS {QUERY}")
    rng = np.random.default_rng(1)
    _random_inserts(con, rng)
    # Out-of-order rows and rewrites of existing timestamps update old windows too.
    con.execute(f"INSERT INTO d0 VALUES ({T0}, 100.0, 1000)")
    expected = con.execute(QUERY).fetchall()
    assert len(expected) > 50 and max(r[3] for r in expected) == 1000
    assert con.execute("SELECT * FROM agg").fetchall() == expected
    assert [r[0] for r in con.execute("SHOW STREAMS").fetchall()] == ["s1"]
    con.close()
    # Reopened, the stream keeps listening.
    con = tsdb.connect(tmp_path, "db")
    _random_inserts(con, rng, 5)
    assert con.execute("SELECT * FROM agg").fetchall() == con.execute(QUERY).fetchall()
    con.execute("DROP STREAM s1")
    with pytest.raises(tsdb.TsdbError, match="does not exist"):
        con.execute("DROP STREAM s1")
    with pytest.raises(tsdb.TsdbError, match="_wstart"):
        con.execute("CREATE STREAM s2 INTO x AS SELECT avg(v) FROM m INTERVAL(1m)")
    con.close()


def test_topic_consumer_reads_new_rows_and_commits_offsets(tmp_path):
    con = tsdb.connect(tmp_path)
    con.execute("CREATE DATABASE db; USE db")
    con.execute("CREATE STABLE m (ts TIMESTAMP, v DOUBLE, n INT) TAGS (g INT)")
    con.execute(f"INSERT INTO d1 USING m TAGS (1) VALUES ({T0}, 1.0, 1)")  # before the topic
    con.execute("CREATE TOPIC hot AS SELECT ts, v, g FROM m WHERE v > 1.5")
    con.execute(f"INSERT INTO d1 USING m TAGS (1) VALUES ({T0 + 1}, 2.0, 1) ({T0 + 2}, 1.0, 3)")
    con.execute(f"INSERT INTO d2 USING m TAGS (2) VALUES ({T0 + 3}, 5.0, 1)")
    c = Consumer(con, "hot", "g1")
    rows = c.poll()
    assert [(r["tbname"], r["v"], r["g"]) for r in rows.to_pylist()] == [
        ("d1", 2.0, 1),
        ("d2", 5.0, 2),
    ]
    assert c.poll() is None
    c.commit()
    con.execute(f"INSERT INTO d2 USING m TAGS (2) VALUES ({T0 + 4}, 6.0, 1)")
    con.close()
    con = tsdb.connect(tmp_path, "db")
    c = Consumer(con, "hot", "g1")  # resumes at the committed offset
    assert c.committed == 2
    assert [r["v"] for r in c.poll().to_pylist()] == [6.0]
    other = Consumer(con, "hot", "g2")  # another group starts at 0
    assert other.poll(max_rows=2).num_rows == 2
    con.close()


def test_streams_and_topics_over_http(tmp_path):
    with ThreadServer(tmp_path, fsync="off") as s:

        def sql(text, db=None):
            url = f"{s.url}/rest/sql" + (f"/{db}" if db else "")
            body = httpx.post(url, content=text, auth=ROOT).json()
            assert body["code"] == 0, body
            return body

        sql("CREATE DATABASE db")
        sql("CREATE STABLE m (ts TIMESTAMP, v DOUBLE, n INT) TAGS (g INT)", "db")
        sql(f"CREATE STREAM s1 INTO agg AS {QUERY}", "db")
        sql("CREATE TOPIC t1 AS SELECT ts, v FROM m", "db")
        for k in range(4):  # four requests of ten rows
            rows = " ".join(f"({T0 + i * 7000}, {i}.5, {i})" for i in range(k * 10, k * 10 + 10))
            sql(f"INSERT INTO d1 USING m TAGS (1) VALUES {rows}", "db")
        expected = sql(QUERY, "db")["data"]
        assert len(expected) > 5 and sql("SELECT * FROM agg", "db")["data"] == expected
        poll = httpx.post(f"{s.url}/tmq/t1/poll?group=a&max_rows=30", auth=ROOT).json()
        assert poll["rows"] == 30 and poll["offset"] == 0 and poll["next_offset"] == 30
        r = httpx.post(f"{s.url}/tmq/t1/commit?group=a&offset=30", auth=ROOT).json()
        assert r["code"] == 0
        poll = httpx.post(f"{s.url}/tmq/t1/poll?group=a", auth=ROOT).json()
        assert poll["rows"] == 10 and poll["data"][0][2] == 30.5
        names = [r[0] for r in sql("SHOW TOPICS")["data"]]
        assert names == ["t1"]
