"""The SQL parser: TDengine's statements parse; malformed SQL names the position and the
token; random input never raises anything but SqlError."""

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from septet.errors import SeptetError
from septet.tsdb import sqlast as A
from septet.tsdb.errors import SqlError, TsdbError
from septet.tsdb.parser import parse, parse_one


def test_error_names_the_offset_line_column_and_token():
    with pytest.raises(SqlError) as info:
        parse("SELECT avg(v) FROM m\nWHERE ts > AND v < 3")
    message = str(info.value)
    assert "'AND'" in message and "line 2, column 12" in message and "offset 32" in message
    assert info.value.position == 32


def test_errors_are_septet_errors_for_the_cli():
    assert issubclass(SqlError, TsdbError) and issubclass(TsdbError, SeptetError)


@pytest.mark.parametrize(
    "sql,fragment",
    [
        ("SELEC * FROM t", "'SELEC'"),
        ("SELECT * FROM t LIMIT x", "a row count"),
        ("SELECT * FROM t INTERVAL(10)", "duration"),
        ("SELECT * FROM t INTERVAL(10s) FILL(SOMETIMES)", "fill mode"),
        ("CREATE STABLE s (ts TIMESTAMP, v REALLYBIG) TAGS (t INT)", "unknown data type"),
        ("SELECT 'open", "unterminated string"),
        ("SELECT 10q FROM t", "durations are written like"),
        ("CREATE DATABASE d KEEP 10 COLOR 'red'", "unknown database option 'COLOR'"),
        ("", "empty statement"),
    ],
)
def test_malformed_sql_says_what_was_expected(sql, fragment):
    with pytest.raises(SqlError, match=fragment):
        parse(sql)


def test_a_full_tdengine_select_parses_into_its_clauses():
    q = parse_one(
        "SELECT _wstart, tbname, avg(current) AS a FROM power.meters "
        "WHERE ts >= NOW - 1h AND location IN ('SF', 'LA') PARTITION BY tbname "
        "INTERVAL(10m, 1m) SLIDING(5m) FILL(VALUE, 0) ORDER BY a DESC LIMIT 5 OFFSET 1 SLIMIT 2"
    )
    assert isinstance(q, A.Select)
    assert q.source == A.TableName("meters", "power")
    assert q.interval == A.Interval(A.Duration(10, "m"), A.Duration(1, "m"), A.Duration(5, "m"))
    assert q.fill == A.Fill("VALUE", (A.Literal(0),))
    assert q.partition_by == [A.ColumnRef("tbname")]
    assert (q.limit, q.offset, q.slimit) == (5, 1, 2)
    assert q.items[2] == (A.Func("AVG", (A.ColumnRef("current"),)), "a")


def test_multi_table_insert_with_auto_create_parses():
    stmt = parse_one(
        "INSERT INTO d1 USING meters TAGS ('SF', 2) VALUES (NOW, 10.3, 219) (NOW + 1s, 1, 2) "
        "d2 (ts, current) VALUES ('2024-01-01 00:00:00', -1.5)"
    )
    assert isinstance(stmt, A.Insert) and len(stmt.targets) == 2
    assert stmt.targets[0].using == A.TableName("meters")
    assert stmt.targets[1].columns == ["ts", "current"]
    assert stmt.targets[1].rows[0][1] == A.Literal(-1.5)


def test_several_statements_split_on_semicolons_and_comments_are_skipped():
    stmts = parse("USE db; -- pick the database\nSHOW STABLES; /* and */ DESCRIBE t;")
    assert [type(s).__name__ for s in stmts] == ["UseDatabase", "Show", "Describe"]


WORDS = st.sampled_from(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "INTERVAL",
        "(",
        ")",
        "10s",
        "FILL",
        "PREV",
        ",",
        "*",
        "avg",
        "ts",
        "'x'",
        "1",
        "1.5e3",
        "AND",
        "OR",
        "NOT",
        "IN",
        "BETWEEN",
        "LIKE",
        "INSERT",
        "INTO",
        "VALUES",
        "USING",
        "TAGS",
        "CREATE",
        "STABLE",
        "TABLE",
        "DATABASE",
        ";",
        "-",
        "+",
        "?",
        "ORDER",
        "BY",
        "LIMIT",
        "PARTITION",
        "`q`",
        ".",
        "NULL",
        "IS",
        "CASE",
        "WHEN",
        "END",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(WORDS, max_size=25).map(" ".join))
def test_random_token_soup_raises_only_sql_errors(sql):
    with contextlib.suppress(SqlError):
        parse(sql)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_random_text_raises_only_sql_errors(sql):
    with contextlib.suppress(SqlError):
        parse(sql)


def test_deep_nesting_is_a_sql_error_not_a_crash():
    with pytest.raises(SqlError, match="nested too deeply"):
        parse("SELECT " + "(" * 5000 + "1" + ")" * 5000)
