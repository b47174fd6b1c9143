"""TDengine's REST answers as JSON bytes: the column meta with TDengine's type names, and the
rows with its timestamp texts (RFC 3339 in UTC, the database precision's digits).

Writers of the same answer by its size: a small one from Python lists of its values by orjson
(fixed cost matters: a dashboard query answers tens of rows; Arrow's kernels cost more to call,
measured in the server); a large one a column at a time by Arrow's kernels (per-value cost
matters: tens of thousands of rows), in slices on the thread pool. Their floats are the same
numbers in other texts (orjson writes 3.0, Arrow 3). A planned query's answer is written
straight from its numpy columns.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from septet.tsdb.executor import Result
from septet.tsdb.parallel import cores, map_chunks
from septet.tsdb.segment import from_numpy_valid

_TYPE_NAMES = [
    (pa.types.is_boolean, "BOOL", 1),
    (lambda t: t == pa.int8(), "TINYINT", 1),
    (lambda t: t == pa.int16(), "SMALLINT", 2),
    (lambda t: t == pa.int32(), "INT", 4),
    (lambda t: t == pa.int64(), "BIGINT", 8),
    (lambda t: t == pa.uint8(), "TINYINT UNSIGNED", 1),
    (lambda t: t == pa.uint16(), "SMALLINT UNSIGNED", 2),
    (lambda t: t == pa.uint32(), "INT UNSIGNED", 4),
    (lambda t: t == pa.uint64(), "BIGINT UNSIGNED", 8),
    (pa.types.is_float32, "FLOAT", 4),
    (pa.types.is_float64, "DOUBLE", 8),
    (pa.types.is_timestamp, "TIMESTAMP", 8),
]


def _format_ts(value: Any, unit: str) -> str | None:
    """TDengine's REST timestamps: RFC 3339 in UTC with the database precision's digits."""
    if value is None:
        return None
    digits = _DIGITS[unit]
    seconds, frac = divmod(int(value), 10**digits)
    day, second = divmod(seconds, 86_400)
    minute, second = divmod(second, 60)
    hour, minute = divmod(minute, 60)
    # Integer arithmetic and a cached date: ~5x faster than datetime + strftime per value.
    text = f"{_date_text(day)}T{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{frac:0{digits}d}Z" if digits else text + "Z"


def _format_ts_list(values: list[int | None], unit: str) -> list[str | None]:
    """_format_ts of many values: dates looked up once per day, the time of day and the
    milliseconds from tables of texts (a third of the cost of formatting each value)."""
    digits = _DIGITS[unit]
    per_s, dates, out = 10**digits, {}, []
    hours, minutes = _hour_texts(), _minute_second_texts()
    # Milliseconds (TDengine's default precision) from a table; other precisions formatted.
    millis = _millisecond_texts() if digits == 3 else None
    fmt = "Z" if not digits else ".{:0" + str(digits) + "d}Z"
    for v in values:
        if v is None:
            out.append(None)
            continue
        seconds, frac = divmod(v, per_s)
        day, second = divmod(seconds, 86_400)
        date = dates.get(day) or dates.setdefault(day, _date_text(day) + "T")
        hour, second = divmod(second, 3600)
        tail = fmt.format(frac) if millis is None else millis[frac]
        out.append(date + hours[hour] + minutes[second] + tail)
    return out


@functools.cache
def _hour_texts() -> list[str]:
    return [f"{h:02d}:" for h in range(24)]


@functools.cache
def _minute_second_texts() -> list[str]:
    """'MM:SS' for each second of an hour."""
    return [f"{m:02d}:{s:02d}" for m in range(60) for s in range(60)]


@functools.cache
def _millisecond_texts() -> list[str]:
    return [f".{f:03d}Z" for f in range(1000)]


_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


@functools.lru_cache(maxsize=4096)
def _date_text(day: int) -> str:
    """'YYYY-MM-DD' of a day number since 1970-01-01."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


@functools.lru_cache(maxsize=256)
def _type_name(t: pa.DataType) -> tuple[str | None, int]:
    """TDengine's name and length of an Arrow type ((None, 0): a string-like type)."""
    return next(((n, w) for test, n, w in _TYPE_NAMES if test(t)), (None, 0))


def rest_body(result: Result) -> dict[str, Any]:
    """A Result as TDengine's REST success body."""
    if result.table is None:
        n = max(result.rowcount, 0)
        return {"code": 0, "column_meta": [["affected_rows", "INT", 4]], "data": [[n]], "rows": 1}
    meta, columns = _table_columns(result.table)
    data = [list(row) for row in zip(*columns, strict=True)] if columns else []
    return {"code": 0, "column_meta": meta, "data": data, "rows": len(data)}


_FLOATS = ("FLOAT", "DOUBLE")


def _table_columns(table: pa.Table) -> tuple[list[list], list[list]]:
    """The column meta of a table, and its columns' values as the REST body holds them."""
    meta, columns = [], []
    for field, col in zip(table.schema, table.columns, strict=True):
        t = field.type
        name, length = _type_name(t)
        if name == "TIMESTAMP":
            # The epoch numbers: a view of each chunk's values (a cast costs ~10x more).
            chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
            values = [v for c in chunks for v in c.view(pa.int64()).to_pylist()]
        elif name is None:
            values = [None if v is None else str(v) for v in col.to_pylist()]
            name = "VARCHAR"
            length = max((len(v.encode()) for v in values if v is not None), default=0)
        else:
            values = col.to_pylist()
            if name in _FLOATS:  # JSON has no NaN or infinity: null
                values = [v if v is None or math.isfinite(v) else None for v in values]
        meta.append([field.name, name, length])
        columns.append(_rest_values(name, t, values))
    return meta, columns


def _rest_values(kind: str, t: pa.DataType, values: list) -> list:
    """A column's Python values (None: NULL) as the REST body holds them: timestamps as
    texts, float32 as the shortest float that reads back as the same float32."""
    if kind == "TIMESTAMP":
        return _format_ts_list(values, t.unit)
    if kind == "FLOAT":
        return [None if v is None else float(str(np.float32(v))) for v in values]
    return values


def _small_json(meta: list[list], columns: list[list], n: int) -> bytes:
    """The REST body of a small answer from its columns' values, by orjson (rows as tuples,
    which it writes as arrays; NaN and infinities as null)."""
    rows = list(zip(*columns, strict=True)) if columns else []
    return _dumps({"code": 0, "column_meta": meta, "data": rows, "rows": n})


def rest_json_columns(columns: list[tuple[str, pa.DataType, np.ndarray, Any]]) -> bytes:
    """rest_json of the table of these columns (name, Arrow type, numpy values, validity or
    None), a small one written straight from numpy without making the Arrow table first
    (a planned query's answer: see prepared.py)."""
    n = len(columns[0][2]) if columns else 0
    types = [_type_name(t)[0] for _, t, _, _ in columns]
    small = n < SMALL_ROWS and n * len(columns) < SMALL_VALUES
    if not columns or not small or None in types:
        return rest_json(Result(columns_table(columns), n))
    meta, values = [], []
    for (name, t, v, ok), kind in zip(columns, types, strict=True):
        meta.append([name, kind, _type_name(t)[1]])
        col = v.tolist()
        if ok is not None and not ok.all():
            col = [x if good else None for x, good in zip(col, ok.tolist(), strict=True)]
        values.append(_rest_values(kind, t, col))
    return _small_json(meta, values, n)


ARROW_STREAM = "application/vnd.apache.arrow.stream"  # the media type of Arrow IPC streams


class ArrowAnswer(bytes):
    """An answer that is an Arrow IPC stream rather than JSON (its media type says so)."""


def media_type(body: bytes) -> str:
    """The Content-Type of an answer's body: an Arrow stream's, else JSON's."""
    return ARROW_STREAM if isinstance(body, ArrowAnswer) else "application/json"


def rest_arrow(result: Result) -> ArrowAnswer:
    """A result as an Arrow IPC stream: the table with its own types (timestamps as
    timestamps, numbers as numbers), for clients that read large answers with Arrow (JSON
    cost ~0.25 us of server and client CPU per value of high-cpu-all's 500,000 x 12 answer,
    Arrow ~0.01 us); a statement without rows answers a
    one-row ``affected_rows`` table, as the JSON body does."""
    table = result.table
    if table is None:
        table = pa.table({"affected_rows": pa.array([max(result.rowcount, 0)], pa.int32())})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return ArrowAnswer(sink.getvalue().to_pybytes())


def columns_table(columns: list[tuple[str, pa.DataType, np.ndarray, Any]]) -> pa.Table:
    """The Arrow table of columns given as (name, Arrow type, numpy values, validity or None)."""
    return pa.table({name: from_numpy_valid(v, ok, t) for name, t, v, ok in columns})


def rest_json(result: Result) -> bytes:
    """rest_body's JSON text; a large table is formatted a column at a time by arrow, not
    value by value (high-cpu-all over REST: tens of thousands of rows). Arrow's way has a
    fixed cost of ~15 compute calls, the row way costs per row (a timestamp is ~1 us of
    Python): measured, they break even near 200 rows of a timestamp and a value. A table of
    many rows is formatted in slices of rows on the query thread pool (arrow's kernels run
    without the GIL), one slice per core."""
    table = result.table
    if table is None:
        return _dumps(rest_body(result))
    if table.num_rows < SMALL_ROWS and table.num_rows * table.num_columns < SMALL_VALUES:
        return _small_json(*_table_columns(table), table.num_rows)
    meta, kinds = [], []
    for field, col in zip(table.schema, table.columns, strict=True):
        t = field.type
        if pa.types.is_dictionary(t):
            t = t.value_type
        name, length = _type_name(t)
        if name is None:
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                return _dumps(rest_body(result))
            name = "VARCHAR"
            if col.type != t:
                col = col.cast(t)
            longest = pc.max(pc.binary_length(col)).as_py()
            length = 0 if longest is None else longest
        meta.append([field.name, name, length])
        kinds.append((name, t))
    n = table.num_rows
    parts = max(1, min(cores(), n // ROWS_PER_SLICE))
    bounds = [n * k // parts for k in range(parts + 1)]
    slices = [table.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    if parts == 1:
        texts = [_rows_json(slices[0], kinds)]
    else:
        texts = map_chunks(lambda chunk: [_rows_json(t, kinds) for t in chunk], slices, parts, 2)
        texts = [x for chunk in texts for x in chunk]
    parts = [_dumps({"code": 0, "column_meta": meta})[:-1], b',"data":[']
    for k, text in enumerate(texts):
        parts += [b",", text] if k else [text]
    return b"".join([*parts, b'],"rows":', str(n).encode(), b"}"])  # one copy of the rows


# Answers of fewer rows and values than these are written a value at a time (see rest_json).
SMALL_ROWS, SMALL_VALUES = 256, 2048
ROWS_PER_SLICE = 32_768  # rows of a REST answer below which one thread formats it all


def _rows_json(table: pa.Table, kinds: list[tuple[str, pa.DataType]]) -> memoryview:
    """The JSON text of a table's rows, '[v,...],[v,...]' (no outer brackets)."""
    texts = []
    for (name, t), col in zip(kinds, table.columns, strict=True):
        col = col.combine_chunks()
        if col.type != t:
            col = col.cast(t)  # a dictionary column
        if name == "TIMESTAMP":
            text = _timestamps_json(col, t.unit)
        elif name == "BOOL":
            text = pc.if_else(col, "true", "false")
        elif name in ("FLOAT", "DOUBLE"):  # shortest text that reads back as the same value
            finite = pc.is_finite(col)
            text = pc.if_else(finite, pc.cast(col, pa.string()), pa.scalar(None, pa.string()))
        elif name != "VARCHAR":
            text = pc.cast(col, pa.string())
        else:
            enc = col.cast(pa.string()).dictionary_encode()
            words = enc.dictionary.to_pylist()
            text = pa.array([_dumps(w).decode() for w in words], pa.string()).take(enc.indices)
        texts.append(pc.fill_null(text, "null"))
    # Each row as '[v,...],': the rows' text is then the string array's data buffer as is.
    rows = pc.binary_join_element_wise("[", pc.binary_join_element_wise(*texts, ","), "],", "")
    width = 8 if pa.types.is_large_string(rows.type) else 4
    offsets = np.frombuffer(rows.buffers()[1], f"i{width}", len(rows) + 1, rows.offset * width)
    return memoryview(rows.buffers()[2])[int(offsets[0]) : int(offsets[-1]) - 1]


def _timestamps_json(col: pa.Array, unit: str) -> pa.Array:
    """_format_ts's text, quoted, for a whole column. Every text has the same width, so the
    texts are copied from tables (the dates of the days in the column's range, the 86,400
    times of day, the 1,000 three-digit groups of a fraction) into one byte array with numpy,
    and the string array is made over it without a copy (~4x faster than joining strings);
    a column spanning many days has its dates formatted per distinct day instead."""
    digits = _DIGITS[unit]
    raw = pc.fill_null(col.cast(pa.int64()), 0).to_numpy()
    seconds, frac = np.divmod(raw, 10**digits)
    day, second = np.divmod(seconds, 86_400)
    n = raw.size
    first = int(day.min()) if n else 0
    if n and int(day.max()) - first >= 4096:
        return _timestamps_json_by_day(col, raw, digits, frac, day, second)
    last = int(day.max()) if n else 0
    dates = "".join(_date_text(d) for d in range(first, last + 1)).encode()
    width = 1 + 10 + 1 + 8 + (1 + digits if digits else 0) + 2
    out = np.empty((n, width), np.uint8)
    out[:, 0] = ord('"')
    out[:, 1:11] = np.frombuffer(dates, np.uint8).reshape(-1, 10)[day - first]
    out[:, 11] = ord("T")
    out[:, 12:20] = _clock_bytes()[second]
    if digits:
        out[:, 20] = ord(".")
        groups = _three_digits()
        for k in range(digits // 3 - 1, -1, -1):  # three digits at a time, from the last
            frac, rest = np.divmod(frac, 1000)
            out[:, 21 + 3 * k : 24 + 3 * k] = groups[rest]
    out[:, -2] = ord("Z")
    out[:, -1] = ord('"')
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    text = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))
    if col.null_count:
        text = pc.if_else(col.is_valid(), text, pa.scalar(None, pa.string()))
    return text


@functools.cache
def _clock_bytes() -> np.ndarray:
    """'HH:MM:SS' of every second of a day, as an (86400, 8) byte table."""
    return np.frombuffer("".join(_clock().to_pylist()).encode(), np.uint8).reshape(-1, 8)


@functools.cache
def _three_digits() -> np.ndarray:
    """'000' to '999' as a (1000, 3) byte table."""
    return np.frombuffer("".join(f"{k:03d}" for k in range(1000)).encode(), np.uint8).reshape(-1, 3)


def _timestamps_json_by_day(col, raw, digits, frac, day, second) -> pa.Array:
    """_timestamps_json with dates per distinct day, for years outside 0-9999 (which have
    texts of other widths, or none: the formatting raises for those past 9999)."""
    per_s = 10**digits
    days = pa.array(day).dictionary_encode()
    epoch = dt.date(1970, 1, 1)
    dates = [(epoch + dt.timedelta(days=d)).isoformat() for d in days.dictionary.to_pylist()]
    parts: list[Any] = ['"', pa.array(dates).take(days.indices), "T", _clock().take(second)]
    if digits:
        parts += [".", pc.utf8_slice_codeunits(pc.cast(pa.array(frac + per_s), pa.string()), 1)]
    text = pc.binary_join_element_wise(*parts, 'Z"', "")
    return pc.if_else(col.is_valid(), text, pa.scalar(None, pa.string()))


@functools.cache
def _clock() -> pa.Array:
    """'HH:MM:SS' for every second of a day."""
    h, rest = np.divmod(np.arange(86_400), 3600)
    m, s = np.divmod(rest, 60)
    return pa.array([f"{a:02d}:{b:02d}:{c:02d}" for a, b, c in zip(h, m, s, strict=True)])


def _dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON (what TDengine's taosAdapter writes), by orjson: ~6x faster than
    the standard library's encoder on an answer of 60 rows, whose floats it writes as Ryu's
    shortest texts (Python writes 1e-05 where it writes 0.00001: the same number)."""
    return orjson.dumps(value)
