"""Turning user values (SQL literals, Python objects, Arrow columns) into column data,
with errors that name the column and the value."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from septet.tsdb.catalog import (
    UNITS_PER_SECOND,
    Column,
    arrow_type,
    is_numeric,
    type_base,
    type_length,
)
from septet.tsdb.errors import TsdbError
from septet.tsdb.segment import TS, col_key

_INT_RANGES = {
    "TINYINT": (-(2**7), 2**7 - 1),
    "SMALLINT": (-(2**15), 2**15 - 1),
    "INT": (-(2**31), 2**31 - 1),
    "BIGINT": (-(2**63), 2**63 - 1),
    "TINYINT UNSIGNED": (0, 2**8 - 1),
    "SMALLINT UNSIGNED": (0, 2**16 - 1),
    "INT UNSIGNED": (0, 2**32 - 1),
    "BIGINT UNSIGNED": (0, 2**64 - 1),
}


def parse_timestamp(value: Any, precision: str) -> int:
    """A timestamp as an integer count of ``precision`` units since the epoch (UTC).

    Accepts integers (already in those units), datetimes, and strings such as
    ``'2024-01-01 08:00:00.000'`` or ISO 8601 with a zone; naive times are UTC.
    """
    if isinstance(value, bool):
        raise TsdbError(f"{value!r} is not a timestamp")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dt.datetime | str | np.datetime64):
        import pandas as pd

        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            raise TsdbError(
                f"cannot read {value!r} as a timestamp; write e.g. '2024-01-01 08:00:00.000'"
            ) from exc
        if stamp is pd.NaT:
            raise TsdbError(f"cannot read {value!r} as a timestamp")
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return int(stamp.value) // (1_000_000_000 // UNITS_PER_SECOND[precision])
    raise TsdbError(f"{value!r} is not a timestamp; use an integer, a datetime or a string")


def coerce_scalar(value: Any, type_text: str, name: str, precision: str = "ms") -> Any:
    """One value for a column or tag of ``type_text``, as a JSON-storable Python value."""
    if value is None:
        return None
    base = type_base(type_text)
    try:
        if base == "TIMESTAMP":
            return parse_timestamp(value, precision)
        if base == "BOOL":
            if isinstance(value, str):
                low = value.lower()
                if low not in ("true", "false"):
                    raise ValueError
                return low == "true"
            return bool(value)
        if base in _INT_RANGES:
            if isinstance(value, str):
                value = int(value.strip())
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError
            lo, hi = _INT_RANGES[base]
            if not lo <= int(value) <= hi:
                raise TsdbError(f"value {value} is out of range for column {name!r} ({base})")
            return int(value)
        if base in ("FLOAT", "DOUBLE"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        text = value if isinstance(value, str) else str(value)
        limit = type_length(type_text)
        size = len(text.encode()) if base in ("BINARY", "VARCHAR") else len(text)
        if limit is not None and size > limit:
            raise TsdbError(
                f"value {text[:40]!r} is too long for column {name!r} ({type_text}): "
                f"{size} > {limit}"
            )
        return text
    except (ValueError, TypeError, OverflowError) as exc:
        raise TsdbError(
            f"value {value!r} does not fit column {name!r} of type {type_text}"
        ) from exc


def rows_to_table(
    columns: list[Column], names: list[str] | None, rows: list[list[Any]], precision: str
) -> pa.Table:
    """Literal rows (as parsed from INSERT ... VALUES) -> internal table (ts + c<id> columns)."""
    by_name = {c.name: c for c in columns}
    names = names or [c.name for c in columns]
    for n in names:
        if n not in by_name:
            raise TsdbError(f"no column {n!r}; the columns are {', '.join(by_name)}")
    if columns[0].name not in names:
        raise TsdbError(f"the timestamp column {columns[0].name!r} must be given")
    width = len(names)
    for r in rows:
        if len(r) != width:
            raise TsdbError(f"a row has {len(r)} values but {width} columns were named")
    data = {}
    for j, n in enumerate(names):
        col = by_name[n]
        values = [coerce_scalar(r[j], col.type, col.name, precision) for r in rows]
        data[n] = values
    return conform_arrow(
        columns,
        pa.table(
            {n: pa.array(v, type=_plain_type(by_name[n].type, precision)) for n, v in data.items()}
        ),
        precision,
    )


def _plain_type(type_text: str, precision: str) -> pa.DataType:
    return pa.int64() if type_base(type_text) == "TIMESTAMP" else arrow_type(type_text, precision)


def conform_arrow(columns: list[Column], table: pa.Table, precision: str) -> pa.Table:
    """A user's Arrow table (columns by name, case-insensitive) -> internal rows.

    Missing columns become NULL; values are cast safely (an overflow or a bad string names
    the column); the timestamp may be an Arrow timestamp, integers in the database's
    precision, or strings.
    """
    lower = {n.lower(): n for n in table.column_names}
    ts_col = columns[0]
    if ts_col.name not in lower:
        raise TsdbError(f"the rows have no timestamp column {ts_col.name!r}")
    arrays = [_timestamps(table.column(lower[ts_col.name]), precision, ts_col.name)]
    names = [TS]
    for col in columns[1:]:
        target = arrow_type(col.type, precision)
        if col.name in lower:
            arr = table.column(lower[col.name])
            if arr.type != target:
                try:
                    if pa.types.is_timestamp(target) and not pa.types.is_timestamp(arr.type):
                        arr = pa.array(
                            [
                                None if v is None else parse_timestamp(v, precision)
                                for v in arr.to_pylist()
                            ],
                            pa.int64(),
                        ).cast(target)
                    else:
                        arr = arr.cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise TsdbError(
                        f"values of column {col.name!r} do not fit its type {col.type}: {exc}"
                    ) from exc
            _check_length(col, arr)
        else:
            arr = pa.nulls(table.num_rows, target)
        arrays.append(arr)
        names.append(col_key(col.id))
    extra = set(lower) - {c.name for c in columns}
    if extra:
        raise TsdbError(
            f"no column {sorted(extra)[0]!r}; the columns are {', '.join(c.name for c in columns)}"
        )
    return pa.Table.from_arrays(
        [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays], names=names
    )


def _check_length(col: Column, arr: Any) -> None:
    limit = type_length(col.type)
    if limit is None or len(arr) == 0:
        return
    measure = pc.binary_length if type_base(col.type) in ("BINARY", "VARCHAR") else pc.utf8_length
    longest = pc.max(measure(arr)).as_py()
    if longest is not None and longest > limit:
        raise TsdbError(f"a value of column {col.name!r} is too long for {col.type}: {longest}")


def _timestamps(arr: Any, precision: str, name: str) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise TsdbError(f"the timestamp column {name!r} cannot hold NULL")
    if pa.types.is_timestamp(arr.type):
        if arr.type.tz is not None:
            arr = arr.cast(pa.timestamp(arr.type.unit))
        return arr.cast(pa.timestamp(precision), safe=False).cast(pa.int64())
    if pa.types.is_integer(arr.type):
        return arr.cast(pa.int64())
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        return pa.array([parse_timestamp(v, precision) for v in arr.to_pylist()], pa.int64())
    raise TsdbError(f"column {name!r} must hold timestamps, integers or strings, not {arr.type}")


def is_number_type(type_text: str) -> bool:
    return is_numeric(type_text)
