"""The server's statement cache: a SELECT that differs from an earlier one only in its literals
is built from the earlier one's template, and must equal what the parser makes of it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from septet.tsdb import sqlast as A
from septet.tsdb.errors import SqlError
from septet.tsdb.parser import parse
from septet.tsdb.statement_cache import StatementCache

# Shapes with literal slots: {s} a string, {i} an integer, {f} a float (as the parser reads them).
SHAPES = [
    "SELECT _wstart, max(usage_user) FROM cpu WHERE hostname IN ({s}, {s}) AND ts >= {i} "
    "AND ts < {i} INTERVAL(1m)",
    "SELECT ts, hostname, usage_user FROM cpu WHERE usage_user > {f} AND ts >= {i} AND "
    "ts < {i} AND hostname = {s}",
    "SELECT _wstart, max(usage_user) FROM cpu WHERE ts < {i} INTERVAL(1m) ORDER BY _wstart "
    "DESC LIMIT {i}",
    "select count(*), {i} + v, {f} * 2 from db.t where name like {s} limit {i} offset {i}",
    "SELECT a FROM t WHERE a BETWEEN {i} AND {f} OR b NOT IN ({s}, {s}, {s}) SLIMIT {i}",
    "SELECT a FROM t WHERE a > -{i} AND b = {s}; SELECT {s}, {i} FROM t2",
    "SELECT _wstart, avg(v) FROM t WHERE ts > {s} INTERVAL(10s, 2s) FILL(VALUE, {i})",
    "SELECT last_row(v), tbname FROM t PARTITION BY tbname",
]

texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="'\\\x00"),
    max_size=12,
)
ints = st.integers(min_value=0, max_value=2**62)
floats = st.tuples(st.integers(0, 10**6), st.integers(0, 10**4)).map(lambda t: f"{t[0]}.{t[1]}")


@st.composite
def instances(draw, shape: str) -> str:
    """``shape`` with every slot filled by a drawn literal."""
    out, rest = [], shape
    while "{" in rest:
        head, _, tail = rest.partition("{")
        kind, rest = tail[0], tail[2:]
        value = {"s": lambda: "'" + draw(texts) + "'", "i": lambda: str(draw(ints))}.get(
            kind, lambda: draw(floats)
        )()
        out += [head, value]
    return "".join(out) + rest


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_instances_of_a_shape_equal_the_parsers_trees(data):
    cache = StatementCache()
    for shape in SHAPES:
        first, second, third = (data.draw(instances(shape)) for _ in range(3))
        assert cache.parse(first) == parse(first)
        assert cache.parse(second) == parse(second)
        assert cache.parse(third) == parse(third)


def test_tsbs_queries_are_served_from_templates():
    cache = StatementCache()
    sql = (
        "SELECT _wstart, max(usage_user), max(usage_system) FROM cpu WHERE hostname IN "
        "('host_20', 'host_7') AND ts >= {} AND ts < {} INTERVAL(1m)"
    )
    for k in range(5):
        text = sql.format(1451606400000 + k * 60_000, 1451610000000 + k * 60_000)
        assert cache.parse(text) == parse(text)
    assert cache.hits == 4  # every instance after the first came from the template
    other = "SELECT max(v) FROM t WHERE usage > 90.5 AND name = 'a' LIMIT 3"
    cache.parse(other)
    again = other.replace("90.5", "12.25").replace("'a'", "'b'").replace("3", "40")
    assert cache.parse(again) == parse(again)
    assert cache.hits == 5
    (q,) = cache.parse(again)
    assert q.limit == 40 and isinstance(q.where, A.Binary)


def test_trees_handed_out_are_not_shared():
    cache = StatementCache()
    text = "SELECT a, b FROM t WHERE a > 5 PARTITION BY tbname"
    (first,) = cache.parse(text)
    first.items.append((A.ColumnRef("zzz"), None))  # the executor may change what it gets
    first.partition_by.clear()
    first.limit = 1
    (second,) = cache.parse(text.replace("5", "6"))
    assert second == parse(text.replace("5", "6"))[0]
    assert cache.hits == 1


@pytest.mark.parametrize(
    "a, b",
    [
        ("SELECT a FROM t WHERE a > -5", "SELECT a FROM t WHERE a > -6"),  # folded negation
        ("SELECT 'it''s' FROM t WHERE a = 1", "SELECT 'it''s' FROM t WHERE a = 2"),
        (r"SELECT 'a\'b' FROM t WHERE a = 1", r"SELECT 'a\'b' FROM t WHERE a = 2"),
        ('SELECT "x1" FROM t WHERE a = 1', 'SELECT "x2" FROM t WHERE a = 2'),
        ("SELECT a FROM t -- 1\nWHERE a = 1", "SELECT a FROM t -- 2\nWHERE a = 2"),
        ("SELECT a FROM t WHERE a = ?", "SELECT a FROM t WHERE a = ?"),
        ("SELECT a FROM t WHERE a = 1.5e3", "SELECT a FROM t WHERE a = 2.5e3"),
        ("SELECT a FROM t INTERVAL(10s)", "SELECT a FROM t INTERVAL(20s)"),
        ("SELECT a FROM t WHERE x = 0x10", "SELECT a FROM t WHERE x = 0x20"),
        ("INSERT INTO t VALUES (1, 2)", "INSERT INTO t VALUES (3, 4)"),
        ("SELECT a FROM t; INSERT INTO t VALUES (1)", "SELECT a FROM t; INSERT INTO t VALUES (3)"),
    ],
)
def test_texts_outside_the_literal_model_parse_as_the_parser_does(a, b):
    cache = StatementCache()
    assert cache.parse(a) == parse(a)
    assert cache.parse(b) == parse(b)


def test_errors_are_the_parsers():
    cache = StatementCache()
    cache.parse("SELECT a FROM t WHERE a > 1")
    with pytest.raises(SqlError) as got:
        cache.parse("SELECT a FROM t WHERE a > 1 AND")
    with pytest.raises(SqlError) as want:
        parse("SELECT a FROM t WHERE a > 1 AND")
    assert str(got.value) == str(want.value)
