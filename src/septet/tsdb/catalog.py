"""The catalog: databases, super tables, tables, their columns and tags, as plain dataclasses
that serialise to JSON for the manifest.

Columns carry a stable integer id: a block stores columns by id, so ``ALTER STABLE ... DROP
COLUMN c`` followed by ``ADD COLUMN c`` never resurrects the old values.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from septet.tsdb.errors import TsdbError

PRECISIONS = ("ms", "us", "ns")
UNITS_PER_SECOND = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
CACHE_MODELS = ("none", "last_row", "last_value", "both")

# TDengine's type names -> (arrow type, numpy dtype or None for strings).
_FIXED_TYPES: dict[str, tuple[pa.DataType, Any]] = {
    "BOOL": (pa.bool_(), np.bool_),
    "TINYINT": (pa.int8(), np.int8),
    "SMALLINT": (pa.int16(), np.int16),
    "INT": (pa.int32(), np.int32),
    "BIGINT": (pa.int64(), np.int64),
    "TINYINT UNSIGNED": (pa.uint8(), np.uint8),
    "SMALLINT UNSIGNED": (pa.uint16(), np.uint16),
    "INT UNSIGNED": (pa.uint32(), np.uint32),
    "BIGINT UNSIGNED": (pa.uint64(), np.uint64),
    "FLOAT": (pa.float32(), np.float32),
    "DOUBLE": (pa.float64(), np.float64),
}
_ALIASES = {"INTEGER": "INT", "BOOLEAN": "BOOL", "VARBINARY": "BINARY"}
_STRING_TYPES = ("BINARY", "VARCHAR", "NCHAR", "JSON")


def normalize_type(name: str, length: int | None = None) -> str:
    """Canonical type text, e.g. ``VARCHAR(16)``, ``INT UNSIGNED``; raises on unknown types."""
    base = " ".join(name.upper().split())
    base = _ALIASES.get(base, base)
    if base == "TIMESTAMP":
        return base
    if base in _FIXED_TYPES:
        return base
    if base in _STRING_TYPES:
        if base == "JSON":
            return "JSON"
        if length is None:
            raise TsdbError(f"type {base} needs a length, e.g. {base}(32)")
        if not 0 < length <= 65_517:
            raise TsdbError(f"length of {base} must be between 1 and 65517, not {length}")
        return f"{base}({length})"
    raise TsdbError(
        f"unknown data type {name!r}; use TIMESTAMP, BOOL, TINYINT, SMALLINT, INT, BIGINT "
        "(optionally UNSIGNED), FLOAT, DOUBLE, BINARY(n), VARCHAR(n) or NCHAR(n)"
    )


def type_base(type_text: str) -> str:
    return type_text.split("(")[0]


def type_length(type_text: str) -> int | None:
    m = re.search(r"\((\d+)\)", type_text)
    return int(m.group(1)) if m else None


def arrow_type(type_text: str, precision: str = "ms") -> pa.DataType:
    """The Arrow type that holds values of a TDengine type."""
    base = type_base(type_text)
    if base == "TIMESTAMP":
        return pa.timestamp(precision)
    if base in _FIXED_TYPES:
        return _FIXED_TYPES[base][0]
    # TDengine 3 treats BINARY as a synonym of VARCHAR: text, measured in bytes.
    return pa.string()


def numpy_dtype(type_text: str) -> np.dtype | None:
    """The numpy dtype of a fixed-width type (TIMESTAMP -> int64); None for strings."""
    base = type_base(type_text)
    if base == "TIMESTAMP":
        return np.dtype(np.int64)
    if base in _FIXED_TYPES:
        return np.dtype(_FIXED_TYPES[base][1])
    return None


def is_numeric(type_text: str) -> bool:
    base = type_base(type_text)
    return base in _FIXED_TYPES and base != "BOOL"


@dataclass
class Column:
    name: str
    type: str
    id: int


@dataclass
class DatabaseOptions:
    """CREATE DATABASE options; durations are in days (KEEP, DURATION) as TDengine counts them."""

    keep_days: float = 3650.0
    duration_days: float = 10.0
    precision: str = "ms"
    cachemodel: str = "last_row"
    compression: str = "zstd"
    compression_level: int = 3
    block_rows: int = 4096

    def check(self) -> None:
        if self.precision not in PRECISIONS:
            raise TsdbError(f"PRECISION must be one of 'ms', 'us', 'ns', not {self.precision!r}")
        if self.cachemodel not in CACHE_MODELS:
            raise TsdbError(f"CACHEMODEL must be one of {CACHE_MODELS}, not {self.cachemodel!r}")
        if self.duration_days <= 0:
            raise TsdbError("DURATION must be positive")
        if self.keep_days < self.duration_days:
            raise TsdbError(
                f"KEEP ({self.keep_days:g}d) must be at least DURATION ({self.duration_days:g}d)"
            )
        if self.compression not in ("zstd", "lz4", "none"):
            raise TsdbError(f"COMPRESSION must be zstd, lz4 or none, not {self.compression!r}")

    @property
    def units_per_day(self) -> int:
        return UNITS_PER_SECOND[self.precision] * 86_400

    @property
    def partition_span(self) -> int:
        """Length of one time partition in timestamp units."""
        return int(self.duration_days * self.units_per_day)


@dataclass
class SuperTable:
    name: str
    columns: list[Column]  # first is the timestamp
    tags: list[Column]
    next_id: int = 0

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def tag(self, name: str) -> Column | None:
        return next((c for c in self.tags if c.name == name), None)


@dataclass
class Table:
    name: str
    uid: int
    stable: str | None = None  # the super table this is a child of
    tags: dict[str, Any] = field(default_factory=dict)
    columns: list[Column] | None = None  # own schema, only for ordinary tables
    next_id: int = 0


@dataclass
class Database:
    name: str
    options: DatabaseOptions
    stables: dict[str, SuperTable] = field(default_factory=dict)
    tables: dict[str, Table] = field(default_factory=dict)

    def columns_of(self, table: Table) -> list[Column]:
        if table.stable is not None:
            return self.stables[table.stable].columns
        assert table.columns is not None
        return table.columns

    def children(self, stable: str) -> list[Table]:
        return [t for t in self.tables.values() if t.stable == stable]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(d: dict[str, Any]) -> Database:
        db = Database(d["name"], DatabaseOptions(**d["options"]))
        for name, s in d["stables"].items():
            db.stables[name] = SuperTable(
                s["name"],
                [Column(**c) for c in s["columns"]],
                [Column(**c) for c in s["tags"]],
                s["next_id"],
            )
        for name, t in d["tables"].items():
            cols = [Column(**c) for c in t["columns"]] if t["columns"] is not None else None
            db.tables[name] = Table(t["name"], t["uid"], t["stable"], t["tags"], cols, t["next_id"])
        return db


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(name: str, what: str) -> str:
    """Names of databases, tables and columns: letters, digits, underscore; case-insensitive."""
    if not _IDENT.match(name) or len(name) > 192:
        raise TsdbError(
            f"invalid {what} name {name!r}: use letters, digits and '_' and start with a letter"
        )
    return name.lower()
