"""Line protocol a batch at a time, as columns: the fast path of schemaless writes.

Plain lines (``measurement[,tag=v...] field=v[,field=v...] [timestamp]`` with no escapes, quotes,
control characters or extra spaces) are split with numpy on the raw bytes: the positions of
newlines, spaces, commas and equals signs give every line's head (measurement and tags), field
keys, values and timestamp. Lines are grouped by (measurement, field keys); each distinct head
and key set is read once in Python and each value column is converted whole by pyarrow. Lines
of any other shape, and value columns that are not all of one plain type, go to the exact
per-line parser (``line_protocol.parse_line``), which also names the line and column of a
malformed one. Whatever this module cannot write exactly as ``line_protocol.write_points``
would (a type clash, a bad name, a timestamp out of range) raises Fallback before anything is
written, and the caller writes the batch through the exact path, which names the problem.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from septet.tsdb.catalog import check_identifier
from septet.tsdb.errors import TsdbError
from septet.tsdb.line_protocol import (
    _BOOLS,
    _PRECISION,
    ARROW_TYPES,
    TS_COLUMN,
    Point,
    _type_of,
    apply_schema,
    insert_tables,
    parse_text_line,
    precision_ns,
    schema_conflict,
    subtable_name,
)

_TYPE_NAMES = {v: k for k, v in ARROW_TYPES.items()}


def _lut(chars: bytes | range) -> np.ndarray:
    out = np.zeros(256, dtype=bool)
    out[list(chars)] = True
    return out


# Lines with any of these bytes go to the exact parser (escapes, strings, \r, controls).
_SPECIAL = _lut(b'\\"\x7f' + bytes(c for c in range(32) if c != 10))
# A line starting with one of these is blank, a comment or malformed: the exact parser decides.
_BAD_FIRST = _lut(b" ,#=")
# Bytes of a float that float() and arrow read alike ('nan', '1_0', '0x1p3' are not plain).
_FLOAT_CHARS = _lut(b"0123456789.eE+-")
# The kind of a value by its last byte: 1 float, 2 integer (i), 3 unsigned (u), 4 maybe a bool.
_KIND = np.zeros(256, dtype=np.int8)
_KIND[list(b"0123456789.")] = 1
_KIND[ord("i")], _KIND[ord("u")] = 2, 3
_KIND[list(b"eEtTfF")] = 4
_BOOL_WORDS = pa.array(sorted(_BOOLS), pa.large_string())
_TRUE_WORDS = pa.array(sorted(k for k, v in _BOOLS.items() if v), pa.large_string())


class Fallback(Exception):
    """The batch needs the exact per-line path (raised before anything is written)."""


@dataclass
class Rows:
    """Rows of one measurement that share one field set, as columns."""

    measurement: str
    series: list[dict[str, str]]  # distinct tag sets, each as its first line wrote it
    series_index: np.ndarray  # per row: index into series
    fields: dict[str, pa.Array]  # field key -> values of one type, no nulls
    timestamps: np.ndarray  # int64 per row, in the batch's precision (0 where missing)
    missing_ts: np.ndarray | None  # bool per row; None when every row has a timestamp
    lines: np.ndarray  # line numbers, ascending
    heads: list[str] | None = None  # the text that gave each tag set (plain lines only)

    def __getstate__(self) -> dict:
        # Sent from a parser process (septet.tsdb.parse_pool) by the heads' text: the tag
        # dicts are rebuilt from this process's cache of heads, the same objects in every
        # batch, which the writer looks up by identity (see _series_of).
        state = dict(self.__dict__)
        if self.heads is not None:
            state["series"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        if state["series"] is None:
            state["series"] = [_split_head(h)[1] for h in state["heads"]]  # type: ignore[index]
        self.__dict__.update(state)


def _view(buf: pa.Buffer, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """A zero-copy large_string array over ``buf`` whose string 2i is the span
    ``buf[starts[i]:ends[i]]`` (sorted, disjoint, at least one) and 2i+1 the gap after it."""
    offsets = np.empty(2 * starts.size, np.int64)
    offsets[0::2], offsets[1::2] = starts, ends
    return pa.Array.from_buffers(
        pa.large_string(), offsets.size - 1, [None, pa.py_buffer(offsets), buf]
    )


def _pieces(buf: pa.Buffer, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The spans ``buf[starts[i]:ends[i]]`` copied out by arrow's take (memcpy speed, unlike
    numpy's byte gathers)."""
    return _view(buf, starts, ends).take(pa.array(np.arange(0, 2 * starts.size - 1, 2)))


def _bytes(strings: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The data bytes and offsets (from 0) of a large_string array that take() made."""
    offsets = np.frombuffer(strings.buffers()[1], np.int64, strings.offset + len(strings) + 1)
    offsets = offsets[strings.offset :]
    data = np.frombuffer(strings.buffers()[2], np.uint8, int(offsets[-1]))
    return data[int(offsets[0]) :], offsets - offsets[0]


# What a head, a name and a tag set come to, kept between batches: the same series arrive
# in every batch (1,000 hosts: 1,000 heads per 10,000 lines). Cleared when they grow large.
_CACHE_LIMIT = 200_000
_heads: dict[str, tuple[str, dict[str, str]] | None] = {}
_idents: dict[str, str | None] = {}
_series: dict[tuple, tuple[dict[str, str], str]] = {}
_series_by_id: dict[int, tuple[dict[str, str], str, tuple[dict[str, str], str]]] = {}


def _cached(cache: dict, key: Any, make: Any) -> Any:
    try:
        return cache[key]
    except KeyError:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        value = cache[key] = make(key)
        return value


def _split_head(head: str) -> tuple[str, dict[str, str]] | None:
    """``measurement,k=v,...`` exactly as line_protocol's plain-line reader splits it."""
    return _cached(_heads, head, _split_head_now)


def _split_head_now(head: str) -> tuple[str, dict[str, str]] | None:
    parts = head.split(",")
    if not parts[0]:
        return None
    tags = {}
    for kv in parts[1:]:
        k, sep, v = kv.partition("=")
        if not (sep and k and v):
            return None
        tags[k] = v
    return parts[0], tags


def _counts(positions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """How many of the sorted ``positions`` fall in each span [offsets[i], offsets[i+1])."""
    return np.diff(np.searchsorted(positions, offsets))


def parse_rows(body: bytes, first_line: int = 0) -> list[Rows]:
    """A batch (UTF-8 bytes) as Rows; LineProtocolError names the first malformed line.
    ``first_line``: how many lines came before ``body`` (a part of a larger batch)."""
    b = np.frombuffer(body, dtype=np.uint8)
    buf = pa.py_buffer(body)
    nl = np.flatnonzero(b == 10)
    starts = np.concatenate(([0], nl + 1)).astype(np.int64)
    ends = np.concatenate((nl, [b.size])).astype(np.int64)
    nlines = starts.size
    ok = ends > starts  # blank lines are skipped by both paths
    exact = np.zeros(nlines, dtype=bool)  # lines for the exact parser
    if np.count_nonzero(b < 32) != nl.size or any(c in body for c in (b"\\", b'"', b"\x7f")):
        exact[np.searchsorted(starts, np.flatnonzero(_SPECIAL[b]), "right") - 1] = True
    exact[ok] |= _BAD_FIRST[b[starts[ok]]]
    # Spaces: one (no timestamp) or two per plain line, none of its parts empty.
    sp = np.flatnonzero(b == 32)
    first = np.searchsorted(sp, starts)
    count = np.diff(np.append(first, sp.size))
    exact |= ok & (count != 1) & (count != 2)
    sp = np.append(sp, [b.size, b.size])  # so that every line has a first and second
    s1, s2 = sp[first], sp[first + 1]
    has_ts = count == 2
    fend = np.where(has_ts, s2, ends)
    exact |= ok & ((fend <= s1 + 1) | (has_ts & (ends <= s2 + 1)))
    # Timestamps must be -?[0-9]+ here ('+5', '1_0' and the like are the exact parser's).
    with_ts = np.flatnonzero(ok & ~exact & has_ts)
    ts = np.zeros(nlines, np.int64)
    if with_ts.size:
        text = _pieces(buf, s2[with_ts] + 1, ends[with_ts])
        tb, toffs = _bytes(text)
        bad = (tb < 48) | (tb > 57)
        bad[toffs[:-1]] &= tb[toffs[:-1]] != 45
        bad_line = _counts(np.flatnonzero(bad), toffs) > 0
        bad_line |= (np.diff(toffs) == 1) & (tb[toffs[:-1]] == 45)
        exact[with_ts[bad_line]] = True
        good = ~bad_line
        try:
            ts[with_ts[good]] = pc.cast(text.filter(pa.array(good)), pa.int64()).to_numpy()
        except (pa.ArrowInvalid, OverflowError):
            raise Fallback("a timestamp does not fit in 64 bits") from None
    rows: list[Rows] = []
    plain = np.flatnonzero(ok & ~exact)
    if plain.size:
        rows = _plain_rows(buf, plain, starts, s1, fend, has_ts, ts, exact, first_line)
    rows += points_to_rows(_exact_points(body, starts, ends, np.flatnonzero(exact), first_line))
    return rows


def _plain_rows(buf, plain, starts, s1, fend, has_ts, ts, exact, first_line) -> list[Rows]:
    """Rows of the ``plain`` lines; those it cannot convert exactly are marked in ``exact``."""
    fields_text = _pieces(buf, s1[plain] + 1, fend[plain])
    fb, fo = _bytes(fields_text)
    eq, cm = np.flatnonzero(fb == 61), np.flatnonzero(fb == 44)
    n_eq, n_cm = _counts(eq, fo), _counts(cm, fo)
    eq_line = np.repeat(np.arange(plain.size), n_eq)
    cm_line = np.repeat(np.arange(plain.size), n_cm)
    ea = np.cumsum(n_eq) - n_eq  # index of each line's first '='
    ca = np.cumsum(n_cm) - n_cm
    good = n_eq == n_cm + 1
    bad = ~good
    # key=value pairs separated by commas: '=' and ',' alternate with something between.
    mc = np.flatnonzero(good[cm_line])
    e = ea[cm_line[mc]] + mc - ca[cm_line[mc]]  # the '=' before each comma
    bad[cm_line[mc][(eq[e] + 1 >= cm[mc]) | (cm[mc] + 1 >= eq[e + 1])]] = True
    g = np.flatnonzero(good)
    bad[g[(eq[ea[g]] <= fo[g]) | (eq[ea[g] + n_eq[g] - 1] + 1 >= fo[g + 1])]] = True
    exact[plain[bad]] = True
    keep = ~bad
    lines = plain[keep]
    if not lines.size:
        return []
    eq, eq_line = eq[keep[eq_line]], eq_line[keep[eq_line]]
    cm = cm[keep[cm_line]]
    n_eq = n_eq[keep]
    ea = np.cumsum(n_eq) - n_eq
    j = np.arange(eq.size) - np.repeat(ea, n_eq)  # a field's index within its line
    key_start = np.empty(eq.size, np.int64)
    key_start[j == 0] = fo[:-1][keep]
    key_start[j > 0] = cm + 1
    is_last = j == np.repeat(n_eq, n_eq) - 1
    val_end = np.empty(eq.size, np.int64)
    val_end[is_last] = fo[1:][keep]
    val_end[~is_last] = cm
    fbuf = pa.py_buffer(fb)
    # Field-key sets: each line's keys (each with its '=') copied end to end are one string.
    keys = _pieces(fbuf, key_start, eq + 1)
    key_offsets = _bytes(keys)[1]
    sig_offsets = np.append(key_offsets[ea], key_offsets[-1])
    sig = pa.Array.from_buffers(
        pa.large_string(), lines.size, [None, pa.py_buffer(sig_offsets), keys.buffers()[2]]
    ).dictionary_encode()
    sig_id = sig.indices.to_numpy()
    values = _view(fbuf, eq + 1, val_end)  # value i is string 2i
    kind = _KIND[fb[val_end - 1]]
    heads = _pieces(buf, starts[lines], s1[lines]).dictionary_encode()
    head_id = heads.indices.to_numpy()
    head_text = heads.dictionary.to_pylist()
    parsed = [_split_head(h) for h in head_text]
    measurements = sorted({p[0] for p in parsed if p is not None})
    m_index = {m: i for i, m in enumerate(measurements)}
    head_m = np.array([-1 if p is None else m_index[p[0]] for p in parsed], np.int64)
    line_m = head_m[head_id]
    nsig = max(len(sig.dictionary), 1)
    group_key = np.where(line_m < 0, -1, line_m * nsig + sig_id)
    uniq, group_of = np.unique(group_key, return_inverse=True)
    order = np.argsort(group_of, kind="stable")
    cuts = np.flatnonzero(np.diff(group_of[order])) + 1
    out = []
    for key, members in zip(uniq, np.split(order, cuts), strict=True):
        if key < 0:  # a head that is not plain
            exact[lines[members]] = True
            continue
        sig_keys = sig.dictionary[int(key % nsig)].as_py().split("=")[:-1]
        if len(set(sig_keys)) != len(sig_keys):
            exact[lines[members]] = True
            continue
        fields = {}
        for jj, k in enumerate(sig_keys):
            column = _column(values, ea[members] + jj, kind)
            if column is None:
                break
            fields[k] = column
        if len(fields) != len(sig_keys):
            exact[lines[members]] = True
            continue
        s_uniq, s_index = np.unique(head_id[members], return_inverse=True)
        missing = ~has_ts[lines[members]]
        out.append(
            Rows(
                measurements[int(key // nsig)],
                [parsed[h][1] for h in s_uniq],
                s_index,
                fields,
                ts[lines[members]],
                missing if missing.any() else None,
                lines[members] + 1 + first_line,
                [head_text[h] for h in s_uniq],
            )
        )
    return out


def _column(values: pa.Array, idx: np.ndarray, kind: np.ndarray) -> pa.Array | None:
    """One field's values, typed as line_protocol._field_value types them; None if they are
    not all of one plain type (the exact parser then reads those lines)."""
    kinds = kind[idx]
    k = int(kinds[0])
    if k == 0 or (kinds != k).any():
        return None
    col = values.take(pa.array(2 * idx))
    try:
        if k == 4:
            if not pc.all(pc.is_in(col, value_set=_BOOL_WORDS)).as_py():
                return None
            return pc.is_in(col, value_set=_TRUE_WORDS)
        if k == 1:
            data, _ = _bytes(col)
            if not _FLOAT_CHARS[data].all():
                return None
            out = pc.cast(col, pa.float64())
            return out if np.isfinite(out.to_numpy()).all() else None
        # Integers must read back as the same text: arrow also takes '0x1f', int() '+5', '007'.
        digits = pc.utf8_slice_codeunits(col, 0, -1)
        out = pc.cast(digits, pa.int64() if k == 2 else pa.uint64())
        same = pc.all(pc.equal(pc.cast(out, pa.large_string()), digits)).as_py()
        return out if same else None
    except (pa.ArrowInvalid, OverflowError):
        return None


def _exact_points(body: bytes, starts, ends, lines: np.ndarray, first_line: int) -> list[Point]:
    points = []
    for i in lines.tolist():
        p = parse_text_line(body[starts[i] : ends[i]].decode("utf-8"), i + 1 + first_line)
        if p is not None:
            points.append(p)
    return points


def points_to_rows(points: list[Point]) -> list[Rows]:
    """Points (from the exact parser) as Rows: one per measurement, field keys and types."""
    groups: dict[tuple, list[Point]] = {}
    for p in points:
        key = (p.measurement, tuple(p.fields), tuple(_type_of(v) for v in p.fields.values()))
        groups.setdefault(key, []).append(p)
    out = []
    for (measurement, keys, types), pts in groups.items():
        series: dict[tuple, int] = {}
        index = [series.setdefault(tuple(p.tags.items()), len(series)) for p in pts]
        fields = {}
        for k, t in zip(keys, types, strict=True):
            values = [int(p.fields[k]) if t.endswith("UNSIGNED") else p.fields[k] for p in pts]
            fields[k] = pa.array(values, ARROW_TYPES[t])
        try:
            ts = np.array([p.timestamp or 0 for p in pts], np.int64)
        except OverflowError:
            raise Fallback("a timestamp does not fit in 64 bits") from None
        missing = np.array([p.timestamp is None for p in pts])
        out.append(
            Rows(
                measurement,
                [dict(s) for s in series],
                np.array(index, np.int64),
                fields,
                ts,
                missing if missing.any() else None,
                np.array([p.line for p in pts], np.int64),
            )
        )
    return out


def write_rows(connection: Any, database: str, rows: list[Rows], precision: str = "ns") -> int:
    """Write Rows as line_protocol.write_points writes the same lines; Fallback (before any
    change) where that needs the exact path's checks and messages."""
    src_ns = precision_ns(precision)
    engine = connection.engine
    rows = sorted(rows, key=lambda r: int(r.lines[0]))
    with engine.lock:
        db = engine.database(check_identifier(database, "database"))
        db_ns = _PRECISION[db.options.precision]
        now = time.time_ns() // db_ns
        by_name: dict[str, list[Rows]] = {}
        for r in rows:
            by_name.setdefault(r.measurement, []).append(r)
        plans = []
        for name, groups in by_name.items():
            st_name = _ident(name)
            fields, tags = _columns_of(groups)
            if schema_conflict(db, name, st_name, fields, tags):
                raise Fallback("schema")
            plans.append((st_name, groups, fields, tags))
        tables = [
            (st_name, _table(st_name, groups, fields, tags, now, src_ns, db_ns, db.tables))
            for st_name, groups, fields, tags in plans
        ]
        apply_schema(engine, db, [(st_name, fields, tags) for st_name, _, fields, tags in plans])
        return insert_tables(connection, db, tables)


def _ident(name: str) -> str:
    out = _cached(_idents, name, _ident_now)
    if out is None:
        raise Fallback(name)
    return out


def _ident_now(name: str) -> str | None:
    try:
        return check_identifier(name, "name")
    except TsdbError:
        return None


def _series_of(st_name: str, tags: dict[str, str]) -> tuple[dict[str, str], str]:
    """A tag set's lower-cased tags and its sub-table's name."""
    # The tag dicts of plain lines are _heads' cached ones, the same object for the same head
    # in every batch: looked up by identity first (the entry holds the dict, so its id is not
    # reused), which saves hashing every (key, value) pair (1,000 hosts: ~4 ms per batch).
    hit = _series_by_id.get(id(tags))
    if hit is not None and hit[0] is tags and hit[1] == st_name:
        return hit[2]

    def make(key: tuple) -> tuple[dict[str, str], str]:
        lower = {k.lower(): v for k, v in tags.items()}
        return lower, subtable_name(st_name, lower)

    out = _cached(_series, (st_name, *tags.items()), make)
    if len(_series_by_id) >= _CACHE_LIMIT:
        _series_by_id.clear()
    _series_by_id[id(tags)] = (tags, st_name, out)
    return out


def _columns_of(groups: list[Rows]) -> tuple[dict[str, str], dict[str, None]]:
    """Field types and tag names of a measurement, in order of first appearance (line, then
    position in the line), as write_points collects them."""
    seen_f, seen_t = [], []
    types: dict[str, str] = {}
    for r in groups:
        lowered = [_ident(k) for k in r.fields]
        if len(set(lowered)) != len(lowered):
            raise Fallback("field keys equal but for case")
        first = int(r.lines[0])
        for pos, (k, col) in enumerate(zip(lowered, r.fields.values(), strict=True)):
            t = _TYPE_NAMES[col.type]
            if types.setdefault(k, t) != t:
                raise Fallback("field type clash")
            seen_f.append((first, pos, k))
        _, firsts = np.unique(r.series_index, return_index=True)
        key_sets: dict[tuple, int] = {}  # each tag-key sequence at its first line
        for s, at in enumerate(firsts.tolist()):
            keys = tuple(r.series[s])
            key_sets[keys] = min(key_sets.get(keys, at), at)
        for keys, at in key_sets.items():
            line = int(r.lines[at])
            seen_t += [(line, pos, _ident(k)) for pos, k in enumerate(keys)]
    fields = {k: types[k] for _, _, k in sorted(seen_f)}
    tags = dict.fromkeys(k for _, _, k in sorted(seen_t))
    return fields, tags


def _table(st_name, groups, fields, tags, now, src_ns, db_ns, existing) -> pa.Table:
    """The rows of a measurement's groups as one table: tbname, timestamp, tags, fields.

    The tag columns are only read to create new sub-tables (a tag set names its sub-table),
    so when every sub-table of the batch exists they are left out: with 1,000 hosts a batch
    touches 1,000 sub-tables, and building their tags cost ~5 ms per 10,000 lines."""
    series = [[_series_of(st_name, t) for t in r.series] for r in groups]
    known = [existing.get(name.lower()) for s in series for _, name in s]
    if all(t is not None and t.stable == st_name for t in known):
        tags = {}
    parts = []
    for r, named in zip(groups, series, strict=True):
        ts = r.timestamps
        if src_ns % db_ns == 0:
            f = src_ns // db_ns
            if f > 1 and (np.abs(ts) > np.iinfo(np.int64).max // f).any():
                raise Fallback("timestamp out of range")
            ts = ts * f
        else:
            ts = ts // (db_ns // src_ns)
        if r.missing_ts is not None:
            ts = np.where(r.missing_ts, now, ts)
        lower, names = zip(*named, strict=True)
        idx = pa.array(r.series_index)
        arrays = {
            # Dictionary-encoded as stable_runs would encode it: no 10,000-string copy.
            "tbname": pa.DictionaryArray.from_arrays(idx, pa.array(names, pa.string())),
            TS_COLUMN: pa.array(ts, pa.int64()),
        }
        for k in tags:
            arrays[k] = pa.array([t.get(k) for t in lower], pa.string()).take(idx)
        own = {k.lower(): col for k, col in r.fields.items()}
        n = len(r.lines)
        for k, t in fields.items():
            col = own.get(k)
            arrays[k] = pa.nulls(n, ARROW_TYPES[t]) if col is None else col
        arrays["_line"] = pa.array(r.lines)
        parts.append(pa.table(arrays))
    table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
    # The parts of a batch parsed in pieces (septet.tsdb.parse_pool) follow each other.
    in_order = all(int(a.lines[-1]) < int(b.lines[0]) for a, b in itertools.pairwise(groups))
    if not in_order:
        table = table.take(pc.sort_indices(table.column("_line")))
    return table.drop_columns(["_line"])


__all__ = ["Fallback", "Rows", "parse_rows", "points_to_rows", "write_rows"]
