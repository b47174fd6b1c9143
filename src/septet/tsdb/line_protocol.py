"""InfluxDB line protocol and OpenTSDB telnet ``put`` lines, parsed and written schemalessly.

``measurement[,tag=v...] field=v[,field=v...] [timestamp]`` becomes a row of super table
``measurement`` (created on first sight, with columns ``_ts`` and the fields, tags for the tag
keys; later fields and tags are added as they appear) in sub-table ``t_<md5 of the tag set>``,
as TDengine's schemaless writer does. A batch is parsed whole before anything is written: one
malformed line fails the batch with its line number and column.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from septet.tsdb.catalog import check_identifier
from septet.tsdb.errors import TsdbError

TS_COLUMN = "_ts"
TAG_TYPE = "VARCHAR(256)"
STRING_FIELD_TYPE = "VARCHAR(4096)"
# Nanoseconds per unit of each line-protocol precision (InfluxDB's names and TDengine's).
_PRECISION = {"ns": 1, "n": 1, "u": 10**3, "us": 10**3, "ms": 10**6, "s": 10**9,
              "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
_BOOLS = {"t": True, "T": True, "true": True, "True": True, "TRUE": True,
          "f": False, "F": False, "false": False, "False": False, "FALSE": False}  # fmt: skip
FIELD_TYPES = {int: "BIGINT", float: "DOUBLE", bool: "BOOL", str: STRING_FIELD_TYPE}
_DIGITS = re.compile(r"-?[0-9]+\Z")


class LineProtocolError(TsdbError):
    """A malformed line: the message names the line number and the column."""

    def __init__(self, message: str, line: int, column: int):
        super().__init__(f"line {line}, column {column}: {message}")
        self.line, self.column = line, column


class Unsigned(int):
    """A ``u``-suffixed field value (BIGINT UNSIGNED)."""


@dataclass
class Point:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, Any]
    timestamp: int | None  # in the batch's precision
    line: int


def _scan(text: str, pos: int, stops: str, line: int, escapes: str = ",= ") -> tuple[str, int]:
    """Read up to an unescaped character of ``stops``; a backslash escapes one of ``escapes``
    or a backslash, and is kept literally before any other character."""
    out = []
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == "\\" and pos + 1 < n and (text[pos + 1] in escapes or text[pos + 1] == "\\"):
            out.append(text[pos + 1])
            pos += 2
            continue
        if c in stops:
            break
        out.append(c)
        pos += 1
    return "".join(out), pos


class _NotSimple(Exception):
    pass


def _not_simple(message: str) -> _NotSimple:
    return _NotSimple(message)


def _parse_simple(text: str, line: int) -> Point | None:
    """The common line (no escapes, no string fields) by splitting, ~5x faster than scanning;
    None sends anything unusual (including every error) to the scanner, which names the column."""
    if "\\" in text or '"' in text:
        return None
    parts = text.split(" ")
    if len(parts) not in (2, 3):
        return None
    head = parts[0].split(",")
    if not head[0]:
        return None
    tags = {}
    for kv in head[1:]:
        k, sep, v = kv.partition("=")
        if not (sep and k and v):
            return None
        tags[k] = v
    fields: dict[str, Any] = {}
    for kv in parts[1].split(","):
        k, sep, v = kv.partition("=")
        if not (sep and k):
            return None
        try:
            fields[k] = _field_value(v, k, _not_simple)
        except _NotSimple:
            return None
    timestamp = None
    if len(parts) == 3:
        if not _DIGITS.match(parts[2]):
            return None
        timestamp = int(parts[2])
    return Point(head[0], tags, fields, timestamp, line)


def parse_line(text: str, line: int = 1) -> Point:
    """One line of line protocol (no newline) into a Point; LineProtocolError names the column."""
    simple = _parse_simple(text, line)
    if simple is not None:
        return simple
    return _scan_line(text, line)


def _scan_line(text: str, line: int) -> Point:

    def fail(msg: str, pos: int) -> LineProtocolError:
        return LineProtocolError(msg, line, pos + 1)

    measurement, pos = _scan(text, 0, ", ", line, ", ")
    if not measurement:
        raise fail("expected a measurement name", 0)
    tags: dict[str, str] = {}
    while pos < len(text) and text[pos] == ",":
        key, p2 = _scan(text, pos + 1, ",= ", line)
        if not key or p2 >= len(text) or text[p2] != "=":
            raise fail("expected a tag 'key=value'", pos + 1)
        value, p3 = _scan(text, p2 + 1, ", ", line)
        if not value:
            raise fail(f"tag {key!r} has no value", p2 + 1)
        tags[key] = value
        pos = p3
    if pos >= len(text) or text[pos] != " ":
        raise fail("expected a space and then the fields", pos)
    pos += 1
    fields: dict[str, Any] = {}
    while True:
        key, p2 = _scan(text, pos, ",= ", line)
        if not key or p2 >= len(text) or text[p2] != "=":
            raise fail("expected a field 'key=value'", pos)
        pos = p2 + 1
        if pos < len(text) and text[pos] == '"':
            out, pos = [], pos + 1
            while pos < len(text) and text[pos] != '"':
                if text[pos] == "\\" and pos + 1 < len(text) and text[pos + 1] in '"\\':
                    pos += 1
                out.append(text[pos])
                pos += 1
            if pos >= len(text):
                raise fail(f"string value of field {key!r} has no closing quote", p2 + 1)
            fields[key] = "".join(out)
            pos += 1
        else:
            start = pos
            while pos < len(text) and text[pos] not in ", ":
                pos += 1
            fields[key] = _field_value(text[start:pos], key, lambda m, s=start: fail(m, s))
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        break
    timestamp = None
    if pos < len(text):
        if text[pos] != " ":
            raise fail("expected a space before the timestamp", pos)
        raw = text[pos + 1 :].strip(" ")
        try:
            timestamp = int(raw)
        except ValueError:
            raise fail(f"timestamp {raw!r} is not an integer", pos + 1) from None
    return Point(measurement, tags, fields, timestamp, line)


def _field_value(raw: str, key: str, fail: Any) -> Any:
    if not raw:
        raise fail(f"field {key!r} has no value")
    if raw in _BOOLS:
        return _BOOLS[raw]
    try:
        if raw[-1] == "i":
            value = int(raw[:-1])
            if not -(2**63) <= value < 2**63:
                raise fail(f"integer field {key!r} = {raw} does not fit in 64 bits")
            return value
        if raw[-1] == "u":
            value = int(raw[:-1])
            if not 0 <= value < 2**64:
                raise fail(f"unsigned field {key!r} = {raw} does not fit in 64 bits")
            return Unsigned(value)
        value = float(raw)
    except ValueError:
        raise fail(f"field {key!r} has an invalid value {raw!r}") from None
    if not math.isfinite(value) or raw.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        raise fail(f"field {key!r} has an invalid value {raw!r}")
    return value


def parse_lines(text: str) -> list[Point]:
    """Every non-blank, non-comment line; the first malformed one raises for the whole batch."""
    points = []
    for i, line in enumerate(text.split("\n"), start=1):
        p = parse_text_line(line, i)
        if p is not None:
            points.append(p)
    return points


def parse_text_line(line: str, number: int) -> Point | None:
    """One line of a batch as parse_lines reads it: None for blank and comment lines."""
    line = line.rstrip("\r")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    return parse_line(line, number)


def parse_opentsdb(text: str) -> list[Point]:
    """OpenTSDB telnet lines ``put metric timestamp value tag=v ...`` (seconds or ms)."""
    points = []
    for i, line in enumerate(text.split("\n"), start=1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] != "put" or len(parts) < 4:
            raise LineProtocolError("expected 'put <metric> <timestamp> <value> [tag=v ...]'", i, 1)
        try:
            ts = int(parts[2])
        except ValueError:
            raise LineProtocolError(f"timestamp {parts[2]!r} is not an integer", i, 1) from None
        # OpenTSDB: 10 digits are seconds, 13 are milliseconds.
        ts_ms = ts * 1000 if ts < 10**11 else ts
        try:
            value = float(parts[3])
        except ValueError:
            raise LineProtocolError(f"value {parts[3]!r} is not a number", i, 1) from None
        tags = {}
        for kv in parts[4:]:
            k, sep, v = kv.partition("=")
            if not sep or not k or not v:
                raise LineProtocolError(f"tag {kv!r} is not key=value", i, 1)
            tags[_plain(k)] = v
        points.append(Point(_plain(parts[1]), tags, {"_value": value}, ts_ms, i))
    return points


def _plain(name: str) -> str:
    """OpenTSDB's dotted names (``sys.cpu.user``) as table and column names: ``sys_cpu_user``."""
    out = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return out if out[:1].isalpha() or out[:1] == "_" else "m_" + out


def _type_of(value: Any) -> str:
    if isinstance(value, Unsigned):
        return "BIGINT UNSIGNED"
    return FIELD_TYPES[type(value)]


def subtable_name(measurement: str, tags: dict[str, str]) -> str:
    """TDengine's schemaless naming: ``t_`` + md5 of the measurement and sorted tag set."""
    key = measurement + "," + ",".join(f"{k}={tags[k]}" for k in sorted(tags))
    return "t_" + hashlib.md5(key.encode("utf-8")).hexdigest()


def write_points(connection: Any, database: str, points: list[Point], precision: str = "ns") -> int:
    """Write parsed points through ``connection`` (a tsdb Connection); returns rows written.

    Schema changes come first (checked for conflicts before any is made), then all rows go
    in as one insert (one WAL record).
    """
    src_ns = precision_ns(precision)
    engine = connection.engine
    with engine.lock:
        db = engine.database(check_identifier(database, "database"))
        db_ns = _PRECISION[db.options.precision]
        now = time.time_ns() // db_ns
        idents: dict[tuple[str, str], str] = {}

        def ident(k: str, what: str, line: int) -> str:
            out = idents.get((k, what))
            if out is None:
                out = idents[(k, what)] = _ident(k, what, line)
            return out

        groups: dict[str, list[Point]] = {}
        for p in points:
            groups.setdefault(p.measurement, []).append(p)
            if p.timestamp is not None and not _I64[0] <= p.timestamp * src_ns // db_ns < _I64[1]:
                raise LineProtocolError(
                    f"timestamp {p.timestamp} is out of range for a 64-bit {db.options.precision}"
                    " timestamp", p.line, 1)  # fmt: skip
        # 1. Names and types: every problem is found before the catalog changes.
        plans = []
        for name, pts in groups.items():
            st_name = _ident(name, "measurement", pts[0].line)
            fields: dict[str, str] = {}
            tags: dict[str, None] = {}
            for p in pts:
                for k in p.tags:
                    tags[ident(k, "tag", p.line)] = None
                for k, v in p.fields.items():
                    k2 = ident(k, "field", p.line)
                    t = _type_of(v)
                    if fields.setdefault(k2, t) != t:
                        raise LineProtocolError(
                            f"field {k!r} is {t} here but {fields[k2]} earlier in the batch",
                            p.line, 1)  # fmt: skip
            problem = schema_conflict(db, name, st_name, fields, tags)
            if problem:
                raise TsdbError(problem)
            plans.append((st_name, pts, fields, tags))
        # 2. Schema: new super tables, new columns and tags.
        apply_schema(engine, db, [(st_name, fields, tags) for st_name, _, fields, tags in plans])
        # 3. Rows of every measurement, then one insert.
        tables = []
        for st_name, pts, fields, tags in plans:
            cols: dict[str, list[Any]] = {"tbname": [], TS_COLUMN: []}
            for k in tags:
                cols[k] = []
            for k in fields:
                cols[k] = []
            names: dict[tuple, str] = {}
            for p in pts:
                lower_tags = {k.lower(): v for k, v in p.tags.items()}
                key = tuple(lower_tags.items())
                tbname = names.get(key)
                if tbname is None:
                    tbname = names[key] = subtable_name(st_name, lower_tags)
                cols["tbname"].append(tbname)
                ts = now if p.timestamp is None else p.timestamp * src_ns // db_ns
                cols[TS_COLUMN].append(ts)
                for k in tags:
                    cols[k].append(lower_tags.get(k))
                lower_fields = {k.lower(): v for k, v in p.fields.items()}
                for k in fields:
                    cols[k].append(lower_fields.get(k))
            arrays = {"tbname": pa.array(cols["tbname"], pa.string()),
                      TS_COLUMN: pa.array(cols[TS_COLUMN], pa.int64())}  # fmt: skip
            for k in tags:
                arrays[k] = pa.array(cols[k], pa.string())
            for k, t in fields.items():
                arrays[k] = pa.array(cols[k], ARROW_TYPES[t])
            tables.append((st_name, pa.table(arrays)))
        return insert_tables(connection, db, tables)


_I64 = (-(2**63), 2**63)


def precision_ns(precision: str) -> int:
    """Nanoseconds per unit of a line-protocol precision name; TsdbError for unknown ones."""
    if precision not in _PRECISION:
        raise TsdbError(f"precision must be one of {sorted(_PRECISION)}, not {precision!r}")
    return _PRECISION[precision]


def schema_conflict(
    db: Any, name: str, st_name: str, fields: dict[str, str], tags: dict[str, None]
) -> str | None:
    """Why a batch's fields and tags of measurement ``name`` clash with its super table, if
    they do."""
    st = db.stables.get(st_name)
    if st is None and st_name in db.tables:
        return f"measurement {name!r} names a table that is not a super table"
    if st is not None:
        for k, t in fields.items():
            col = st.column(k)
            if col is not None and col.type != t:
                return (
                    f"field {k!r} of measurement {name!r} is {t} in this batch but "
                    f"the column is {col.type}"
                )
            if col is None and st.tag(k) is not None:
                return f"{k!r} is a tag of {name!r}, not a field"
        for k in tags:
            if st.column(k) is not None:
                return f"{k!r} is a field of {name!r}, not a tag"
    return None


def apply_schema(engine: Any, db: Any, plans: list[tuple[str, dict, dict]]) -> None:
    """New super tables, columns and tags for ``(super table, fields, tags)`` plans."""
    for st_name, fields, tags in plans:
        st = db.stables.get(st_name)
        if st is None:
            engine.create_stable(
                db.name,
                st_name,
                [(TS_COLUMN, "TIMESTAMP"), *fields.items()],
                [(k, TAG_TYPE) for k in tags] or [("_tag", TAG_TYPE)],
                True,
            )
            continue
        for k, t in fields.items():
            if st.column(k) is None:
                engine.alter_columns(db.name, st_name, "add", k, t, False)
        for k in tags:
            if st.tag(k) is None:
                engine.alter_columns(db.name, st_name, "add", k, TAG_TYPE, True)


def insert_tables(connection: Any, db: Any, tables: list[tuple[str, pa.Table]]) -> int:
    """Rows (``tbname``, ``_ts``, tags, fields) of each super table, as one insert."""
    runs = []
    for st_name, table in tables:
        ts_name = db.stables[st_name].columns[0].name  # a super table made by SQL may say 'ts'
        if ts_name != TS_COLUMN:
            table = table.rename_columns(
                [ts_name if c == TS_COLUMN else c for c in table.column_names]
            )
        runs.append(connection.session.stable_runs(db.name, st_name, table))
    # One WAL record for the whole batch: after a crash it is there whole or not at all.
    return connection.engine.insert(runs=runs)


ARROW_TYPES = {"BIGINT": pa.int64(), "BIGINT UNSIGNED": pa.uint64(), "DOUBLE": pa.float64(),
          "BOOL": pa.bool_(), STRING_FIELD_TYPE: pa.string()}  # fmt: skip


def _ident(name: str, what: str, line: int) -> str:
    try:
        return check_identifier(name, what)
    except TsdbError as e:
        raise LineProtocolError(str(e), line, 1) from None


@dataclass
class ParsedLines:
    """A batch of line protocol read but not written: columnar Rows, or, where the columnar
    reader declined the batch, the exact parser's Points."""

    body: bytes
    rows: list[Any] | None
    points: list[Point] | None


def parse_line_protocol(text: str | bytes, pool: Any = None) -> ParsedLines:
    """Read a batch without touching any database; a malformed line raises LineProtocolError.

    This is the costly half of a write and needs no lock, so a server parses one request
    while it writes another; with a ``pool`` (septet.tsdb.parse_pool.ParsePool) half of a
    large batch is parsed in another process at the same time."""
    from septet.tsdb.line_batch import Fallback, parse_rows

    body = text.encode("utf-8") if isinstance(text, str) else text
    if not body.isascii():
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise TsdbError(f"line protocol must be UTF-8 text: byte {e.start} is not") from None
    try:
        return ParsedLines(body, parse_rows(body) if pool is None else pool.parse(body), None)
    except Fallback:
        return ParsedLines(body, None, parse_lines(body.decode("utf-8")))


def write_parsed(connection: Any, database: str, parsed: ParsedLines, precision: str = "ns") -> int:
    """Write a parsed batch; nothing is written if any of it cannot be.

    Columnar Rows take the fast path (septet.tsdb.line_batch); should it meet anything it does
    not handle exactly like this module (a type clash, a bad name), the batch is written line
    by line here instead, which names the problem."""
    from septet.tsdb.line_batch import Fallback, write_rows

    if parsed.rows is not None:
        try:
            return write_rows(connection, database, parsed.rows, precision)
        except Fallback:
            pass
    points = parsed.points
    if points is None:
        points = parse_lines(parsed.body.decode("utf-8"))
    return write_points(connection, database, points, precision)


def write_line_protocol(
    connection: Any, database: str, text: str | bytes, precision: str = "ns"
) -> int:
    """Parse and write a batch of line protocol; nothing is written if any line is malformed."""
    return write_parsed(connection, database, parse_line_protocol(text), precision)
