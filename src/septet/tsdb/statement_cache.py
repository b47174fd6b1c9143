"""Parsed SELECT statements reused across requests whose SQL differs only in its literals.

Dashboards and benchmarks send the same query shape again and again with other hosts, times
and thresholds. Tokenizing and parsing a TSBS single-groupby statement costs ~0.15-0.35 ms of
Python, a third of a small query's server time. Here the text's literals (numbers and plain
single-quoted strings) are found by one regular expression; the text with each literal replaced
by a marker of its kind is the key of a *template*: the statement parsed once with a unique
sentinel value per literal. A later text with the same key gets the template with its own
values put where the sentinels are, as new objects (the executor may change a Select).

A template is only kept after checking that it reproduces the parser exactly: the sentinels
put back to the first text's values must give a tree equal to parsing that text. A shape whose
literals the parser does not copy as they are (a negative number folded into a literal, a
string read as something else) never passes, and such texts are parsed every time. Texts with
anything the literal scan does not model exactly (escapes, doubled or double quotes, comments,
quoted identifiers, ``?`` parameters) are parsed every time, as are statements other than
SELECT.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from typing import Any

from septet.tsdb import sqlast as A
from septet.tsdb.parser import parse

# A plain string, or a number that the tokenizer reads as one NUMBER token: not part of a
# word or a dotted name, not followed by a duration unit, exponent or another dot.
_LITERAL = re.compile(r"'([^']*)'|(?<![\w.])(\d+)(\.\d+)?(?![\w.])", re.ASCII)
_UNMODELLED = ("\\", '"', "`", "''", "--", "/*", "?", "\x00")
_MAX_TEXT = 16_384
_MAX_TEMPLATES = 512
_INT_BASE = 7_315_000_000  # sentinels: far from the values queries use, and distinct
_FLOAT_BASE = 7_315.5
_STR_MARK = "\x01sentinel\x01"


class _Uncacheable:
    pass


_NO = _Uncacheable()


class StatementCache:
    """``parse`` for SELECT texts, with a template per literal-free shape (see the module)."""

    def __init__(self, max_templates: int = _MAX_TEMPLATES):
        self.max_templates = max_templates
        self._templates: dict[str, tuple[list[A.Statement], dict] | _Uncacheable] = {}
        self._lock = threading.Lock()
        self.hits = 0
        # The last text scanned and what scanning it gave: the server asks for a request's
        # shape (Server.quick) and then parses the same text.
        self._last: tuple[str, tuple[str, list[Any]] | None] = ("", None)

    def parse(self, sql: str) -> list[A.Statement]:
        """The statements of ``sql``, equal to ``parser.parse(sql)`` and never shared."""
        return self.parse_with_shape(sql)[0]

    def parse_with_shape(self, sql: str) -> tuple[list[A.Statement], str | None]:
        """``parse(sql)`` and the key of its template (None when it has none)."""
        scanned = self.scan(sql)
        if scanned is None:
            return parse(sql), None
        key, values = scanned
        template = self._templates.get(key)
        if template is None:
            statements = parse(sql)  # errors are the parser's, for the text as sent
            template = _make_template(key, statements, values)
            with self._lock:
                if len(self._templates) >= self.max_templates:
                    self._templates.clear()  # bounded: shapes seen again are made again
                self._templates[key] = template
            return statements, None if template is _NO else key
        if template is _NO:
            return parse(sql), None
        self.hits += 1
        trees, slots = template  # type: ignore[misc]
        return [_substitute(t, slots, values) for t in trees], key

    def shape(self, sql: str) -> str | None:
        """The key of the template ``sql`` would be built from, if there is one yet."""
        scanned = self.scan(sql)
        if scanned is None or not isinstance(self._templates.get(scanned[0]), tuple):
            return None
        return scanned[0]

    def template(self, key: str) -> tuple[list[A.Statement], dict] | None:
        """The template of a key: (its statements with a unique sentinel value for each
        literal, (type, sentinel) -> the literal's number); None if there is none. Shared:
        not to be changed."""
        got = self._templates.get(key)
        return got if isinstance(got, tuple) else None

    def scan(self, sql: str) -> tuple[str, list[Any]] | None:
        """(template key, the literals' values in order) of ``sql``; None outside the literal
        model. The last text's answer is kept: the server asks for a request's shape
        (Server.quick) and then parses the same text."""
        last = self._last  # one read: another thread may replace it meanwhile
        if last[0] == sql and sql:
            return last[1]
        scanned = _scan(sql)
        self._last = (sql, scanned)
        return scanned


def _scan(sql: str) -> tuple[str, list[Any]] | None:
    """A text's template key and its literals' values; None outside the literal model."""
    if len(sql) > _MAX_TEXT or any(s in sql for s in _UNMODELLED):
        return None
    key_parts, values, last = [], [], 0
    for m in _LITERAL.finditer(sql):
        key_parts.append(sql[last : m.start()])
        text, whole, frac = m.group(1, 2, 3)
        if text is not None:
            key_parts.append("\x00s")
            values.append(text)
        elif frac is None:
            key_parts.append("\x00i")
            values.append(int(whole))
        else:
            key_parts.append("\x00f")
            values.append(float(whole + frac))
        last = m.end()
    key_parts.append(sql[last:])
    return "".join(key_parts), values


def _make_template(key: str, statements: list[A.Statement], values: list[Any]):
    """The sentinel parse of ``key`` if it reproduces ``statements``; else _NO."""
    if not statements or not all(isinstance(s, A.Select) for s in statements):
        return _NO
    pieces = key.split("\x00")
    text, slots = [pieces[0]], {}
    for k, piece in enumerate(pieces[1:]):
        kind = piece[0]
        if kind == "s":
            sentinel: Any = f"{_STR_MARK}{k}"
            text.append(f"'{sentinel}'")
        elif kind == "i":
            sentinel = _INT_BASE + k
            text.append(str(sentinel))
        else:
            sentinel = _FLOAT_BASE + k
            text.append(repr(sentinel))
        slots[(type(sentinel), sentinel)] = k
        text.append(piece[1:])
    try:
        trees = parse("".join(text))
    except Exception:  # the sentinels do not parse where the values did: no template
        return _NO
    for t in trees:
        _mark_shared(t, slots)
    if [_substitute(t, slots, values) for t in trees] != statements:
        return _NO
    return trees, slots


def _substitute(node: Any, slots: dict, values: list[Any]) -> Any:
    """A copy of ``node`` with every sentinel replaced by its value; mutable containers and
    nodes are always new objects, so callers may change what they get. Immutable subtrees
    without a sentinel (marked by _mark_shared) are shared as they are."""
    kind = type(node)
    if kind is int or kind is float or kind is str:
        k = slots.get((kind, node))
        return node if k is None else values[k]
    if id(node) in slots:
        return node
    if kind is list:
        return [_substitute(v, slots, values) for v in node]
    if kind is tuple:
        return tuple(_substitute(v, slots, values) for v in node)
    if kind is dict:
        return {k: _substitute(v, slots, values) for k, v in node.items()}
    names = _fields(kind)
    if names is None:
        return node  # None, bool, enums: immutable
    copy = object.__new__(kind)
    for name in names:
        object.__setattr__(copy, name, _substitute(getattr(node, name), slots, values))
    return copy


def _mark_shared(node: Any, slots: dict) -> bool:
    """Whether ``node`` is immutable and holds no sentinel; such nodes (frozen dataclasses and
    tuples) are noted in ``slots`` by id so that _substitute hands them out as they are. The
    template keeps them alive, so their ids stay theirs."""
    kind = type(node)
    if kind is int or kind is float or kind is str:
        return (kind, node) not in slots
    if kind is list or kind is dict:
        for v in node.values() if kind is dict else node:
            _mark_shared(v, slots)
        return False
    names = _fields(kind)
    if kind is tuple:
        children = list(node)
    elif names is not None:
        children = [getattr(node, name) for name in names]
    else:
        return node is None or kind is bool
    shared = [_mark_shared(v, slots) for v in children]  # every child, to mark inside too
    if all(shared) and (kind is tuple or kind.__dataclass_params__.frozen):  # type: ignore[attr-defined]
        slots[id(node)] = None
        return True
    return False


def _fields(kind: type) -> tuple[str, ...] | None:
    """A dataclass's field names, or None for other types (both cached)."""
    try:
        return _FIELDS[kind]
    except KeyError:
        names = None
        if dataclasses.is_dataclass(kind):
            names = tuple(f.name for f in dataclasses.fields(kind))
        _FIELDS[kind] = names
        return names


_FIELDS: dict[type, tuple[str, ...] | None] = {}
