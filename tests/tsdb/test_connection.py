"""The embedded API (PEP 249 + Arrow/pandas), DDL and DML statements, and the CLI shell."""

import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pytest

import septet.tsdb as tsdb
from septet.tsdb import connection as dbapi

T = 1_700_000_000_000


@pytest.fixture
def con():
    c = tsdb.connect(":memory:")
    c.execute("CREATE DATABASE power KEEP 36500 DURATION 10 PRECISION 'ms' CACHEMODEL 'both'")
    c.execute("USE power")
    c.execute(
        "CREATE STABLE meters (ts TIMESTAMP, current FLOAT, voltage INT, phase FLOAT) "
        "TAGS (location VARCHAR(64), groupid INT)"
    )
    return c


def test_module_globals_follow_pep_249():
    assert dbapi.apilevel == "2.0" and dbapi.paramstyle == "qmark"
    assert dbapi.threadsafety in (0, 1, 2, 3)
    assert issubclass(dbapi.Error, Exception)


def test_cursor_fetch_methods_and_description(con):
    cur = con.cursor()
    cur.execute(
        f"INSERT INTO d1 USING meters TAGS ('SF', 2) VALUES ({T}, 10.5, 219, 0.31) "
        f"({T + 1000}, 12.5, 220, 0.33) ({T + 2000}, 11.0, 221, 0.30)"
    )
    assert cur.rowcount == 3
    cur.execute("SELECT ts, voltage FROM d1")
    assert [d[0] for d in cur.description] == ["ts", "voltage"]
    assert cur.fetchone()[1] == 219
    assert [r[1] for r in cur.fetchmany(1)] == [220]
    assert [r[1] for r in cur.fetchall()] == [221]
    assert cur.fetchone() is None
    assert cur.rowcount == 3


def test_parameters_and_executemany(con):
    con.execute("CREATE TABLE d2 USING meters TAGS ('LA', 3)")
    cur = con.cursor()
    cur.executemany(
        "INSERT INTO d2 VALUES (?, ?, ?, ?)",
        [(T + i * 1000, i * 1.5, 200 + i, None) for i in range(100)],
    )
    assert cur.rowcount == 100
    cur.execute(
        "SELECT count(*), sum(voltage) FROM d2 WHERE ts >= ? AND voltage < ?", (T + 10_000, 250)
    )
    assert cur.fetchall() == [(40, sum(range(210, 250)))]
    with pytest.raises(tsdb.TsdbError, match="2 '\\?' parameters but 1"):
        cur.execute("SELECT * FROM d2 WHERE ts > ? AND voltage > ?", (1,))


def test_executemany_with_tag_parameters_creates_each_table(con):
    cur = con.executemany(
        "INSERT INTO dx USING meters TAGS (?, 1) VALUES (?, 1.0, 1, 1.0)", [("A", T), ("A", T + 1)]
    )
    assert cur.rowcount == 2
    assert con.execute("SELECT location FROM dx").fetchall() == [("A",), ("A",)]


def test_fetch_arrow_and_fetch_df(con):
    con.execute(f"INSERT INTO d1 USING meters TAGS ('SF', 2) VALUES ({T}, 10.5, 219, 0.31)")
    table = con.execute("SELECT * FROM meters").fetch_arrow()
    assert table.schema.field("ts").type == pa.timestamp("ms")
    assert table.column_names == ["ts", "current", "voltage", "phase", "location", "groupid"]
    df = con.execute("SELECT ts, voltage, location FROM meters").fetch_df()
    assert isinstance(df, pd.DataFrame) and df.voltage.tolist() == [219]
    assert df.ts.iloc[0] == pd.Timestamp(T, unit="ms")


def test_bulk_insert_into_a_super_table_creates_sub_tables_from_tags(con):
    df = pd.DataFrame(
        {
            "tbname": ["a1", "a2", "a1", "a3"],
            "location": ["x", "y", "x", "z"],
            "groupid": [1, 2, 1, 3],
            "ts": pd.to_datetime([T, T, T + 1000, T], unit="ms"),
            "current": [1.0, 2.0, 3.0, 4.0],
            "voltage": [1, 2, 3, 4],
        }
    )
    assert con.insert_df("meters", df) == 4
    rows = con.execute(
        "SELECT tbname, location, count(*), sum(voltage) FROM meters PARTITION BY tbname"
    ).fetchall()
    assert sorted(rows) == [("a1", "x", 2, 4), ("a2", "y", 1, 2), ("a3", "z", 1, 4)]
    assert con.execute("SELECT phase FROM a1").fetchall() == [(None,), (None,)]
    with pytest.raises(tsdb.TsdbError, match="'tbname' is NULL in row 1"):
        con.insert_arrow("meters", pa.table({"tbname": ["a1", None], "ts": [T + 5, T + 6]}))
    assert con.execute("SELECT count(*) FROM meters").fetchall() == [(4,)]


def test_bulk_insert_into_one_table_and_bad_values_name_the_column(con):
    con.execute("CREATE TABLE plain (ts TIMESTAMP, v TINYINT, s NCHAR(3))")
    assert (
        con.insert_arrow("plain", pa.table({"ts": [T, T + 1], "v": [1, 2], "s": ["a", "b"]})) == 2
    )
    with pytest.raises(tsdb.TsdbError, match="'v'"):
        con.insert_arrow("plain", pa.table({"ts": [T + 5], "v": [1000]}))
    with pytest.raises(tsdb.TsdbError, match="column 's'"):
        con.execute(f"INSERT INTO plain VALUES ({T + 9}, 1, 'toolong')")
    with pytest.raises(tsdb.TsdbError, match="column 'v'"):
        con.execute(f"INSERT INTO plain VALUES ({T + 9}, 'abc', 'x')")
    with pytest.raises(tsdb.TsdbError, match="no column 'w'"):
        con.insert_arrow("plain", pa.table({"ts": [T + 5], "w": [1]}))
    # Nothing acknowledged was lost by the errors.
    assert con.execute("SELECT count(*) FROM plain").fetchall() == [(2,)]


def test_ddl_show_describe_alter_drop(con):
    con.execute("CREATE TABLE d1 USING meters TAGS ('SF', 2) d2 USING meters TAGS ('LA', 3)")
    assert con.execute("SHOW STABLES").fetchall() == [("meters", 4, 2, 2)]
    assert [r[0] for r in con.execute("SHOW TABLES").fetchall()] == ["d1", "d2"]
    assert [r[0] for r in con.execute("SHOW TABLES LIKE 'd_'").fetchall()] == ["d1", "d2"]
    desc = con.execute("DESCRIBE meters").fetchall()
    assert desc[0][:2] == ("ts", "TIMESTAMP") and desc[-1] == ("groupid", "INT", 4, "TAG")
    con.execute("ALTER STABLE meters ADD TAG floor INT")
    con.execute("ALTER TABLE d1 SET TAG floor = 7")
    assert con.execute("SELECT tbname, floor FROM meters PARTITION BY tbname").fetchall() == []
    con.execute(f"INSERT INTO d1 VALUES ({T}, 1, 1, 1)")
    assert con.execute("SELECT floor FROM d1").fetchall() == [(7,)]
    con.execute("ALTER STABLE meters DROP TAG floor")
    con.execute("DROP TABLE d2")
    assert [r[0] for r in con.execute("SHOW TABLES").fetchall()] == ["d1"]
    con.execute("DROP STABLE meters")
    assert con.execute("SHOW STABLES").fetchall() == []
    assert [r[0] for r in con.execute("SHOW DATABASES").fetchall()] == ["power"]
    con.execute("DROP DATABASE power")
    with pytest.raises(tsdb.TsdbError, match="no database selected"):
        con.execute("SHOW TABLES")


def test_delete_removes_a_time_range_only_from_the_chosen_tables(con):
    con.execute(
        f"INSERT INTO d1 USING meters TAGS ('SF', 2) VALUES ({T}, 1, 1, 1) "
        f"({T + 1000}, 2, 2, 2) ({T + 2000}, 3, 3, 3) "
        f"d2 USING meters TAGS ('LA', 3) VALUES ({T + 1000}, 9, 9, 9)"
    )
    cur = con.execute(f"DELETE FROM meters WHERE ts >= {T + 1000} AND location = 'SF'")
    assert cur.rowcount == 2
    assert con.execute("SELECT tbname, voltage FROM meters").fetchall() == [("d1", 1), ("d2", 9)]
    with pytest.raises(tsdb.TsdbError, match="only conditions on the timestamp and tags"):
        con.execute("DELETE FROM d1 WHERE voltage > 1")


def test_insert_now_and_durations(con):
    con.execute(
        "INSERT INTO d1 USING meters TAGS ('SF', 2) VALUES (NOW, 1, 1, 1) (NOW + 1s, 2, 2, 2)"
    )
    rows = con.execute("SELECT voltage FROM d1 WHERE ts > NOW - 1h").fetchall()
    assert rows == [(1,), (2,)]


def test_errors_for_unknown_objects(con):
    with pytest.raises(tsdb.TsdbError, match="table 'nope' does not exist"):
        con.execute(f"INSERT INTO nope VALUES ({T}, 1, 1, 1)")
    with pytest.raises(tsdb.TsdbError, match="is a super table"):
        con.execute(f"INSERT INTO meters VALUES ({T}, 1, 1, 1)")
    with pytest.raises(tsdb.TsdbError, match="already exists"):
        con.execute("CREATE DATABASE power")
    with pytest.raises(tsdb.TsdbError, match="unknown option 'fsinc'"):
        tsdb.connect(":memory:", fsinc="always")


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "septet", "tsdb", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_runs_statements_then_queries_from_a_file(tmp_path):
    db = tmp_path / "data"
    r = run_cli(
        "sql",
        str(db),
        "-e",
        "CREATE DATABASE d; USE d; CREATE TABLE t "
        "(ts TIMESTAMP, v DOUBLE); INSERT INTO t VALUES (1700000000000, 2.5)",
    )
    assert r.returncode == 0, r.stderr
    script = tmp_path / "q.sql"
    script.write_text("SELECT v * 2 AS doubled FROM d.t;\n")
    r = run_cli("sql", str(db), str(script))
    assert r.returncode == 0, r.stderr
    assert "doubled" in r.stdout and "5" in r.stdout and "1 row(s) in set" in r.stdout


def test_cli_reports_sql_errors_in_one_line_with_exit_code_2(tmp_path):
    r = run_cli("sql", str(tmp_path), "-e", "SELECT FROM")
    assert r.returncode == 2
    assert "error:" in r.stderr and "offset" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_interactive_prompt_reads_statements_across_lines(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "septet", "tsdb", "sql", str(tmp_path)],
        input="CREATE DATABASE x;\nSHOW\n DATABASES;\nSELECT nope FROM;\n\\q\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "│ x " in r.stdout and "1 row(s) in set" in r.stdout
    assert "error:" in r.stdout  # a bad statement is reported and the shell goes on
