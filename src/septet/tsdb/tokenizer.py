"""The SQL tokenizer: text -> tokens with their offsets, for TDengine's dialect.

Durations (``10s``, ``1h``, ``5m``, ``100a``) are one token, as TDengine writes them; backquoted
identifiers keep their case; strings use single or double quotes with doubled quotes or
backslash escapes.
"""

from __future__ import annotations

from typing import NamedTuple

from septet.tsdb.errors import SqlError

# Duration units as TDengine spells them -> nanoseconds ('n' months and 'y' years are calendar).
DURATION_UNITS = {
    "b": 1,
    "u": 1_000,
    "a": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
    "d": 86_400_000_000_000,
    "w": 7 * 86_400_000_000_000,
    "n": -1,
    "y": -12,
}

_OPERATORS = (
    "<=",
    ">=",
    "<>",
    "!=",
    "==",
    "||",
    "<",
    ">",
    "=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "(",
    ")",
    ",",
    ".",
    ";",
    "?",
    "&",
    "|",
)


class Token(NamedTuple):
    """One token (immutable; a named tuple is made ~8x faster than a frozen dataclass,
    which counted for half of tokenizing)."""

    kind: str  # IDENT, QIDENT, NUMBER, DURATION, STRING, OP, EOF
    text: str  # the source text; for STRING the unescaped value
    pos: int
    value: object = None  # NUMBER: int/float; DURATION: (count, unit)

    def is_word(self, *words: str) -> bool:
        return self.kind == "IDENT" and self.text.upper() in words

    def describe(self) -> str:
        if self.kind == "EOF":
            return "the end of the statement"
        if self.kind == "STRING":
            return f"string '{self.text}'"
        return f"'{self.text}'"


def _digit(c: str) -> bool:
    return "0" <= c <= "9"  # str.isdigit() also accepts '²' and other non-ASCII digits


def tokenize(sql: str) -> list[Token]:
    """All tokens of ``sql``, ending with an EOF token; raises SqlError on a bad character."""
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
            continue
        if sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            if j < 0:
                raise SqlError("unterminated comment", sql, i)
            i = j + 2
            continue
        start = i
        if c.isascii() and (c.isalpha() or c == "_"):
            while i < n and sql[i].isascii() and (sql[i].isalnum() or sql[i] == "_"):
                i += 1
            tokens.append(Token("IDENT", sql[start:i], start))
            continue
        if c == "`":
            j = sql.find("`", i + 1)
            if j < 0:
                raise SqlError("unterminated quoted identifier", sql, i)
            if j == i + 1:
                raise SqlError("empty quoted identifier", sql, i)
            tokens.append(Token("QIDENT", sql[i + 1 : j], start))
            i = j + 1
            continue
        if _digit(c) or (c == "." and i + 1 < n and _digit(sql[i + 1])):
            i = _number(sql, i, tokens)
            continue
        if c in "'\"":
            i = _string(sql, i, tokens)
            continue
        for op in _OPERATORS:
            if sql.startswith(op, i):
                tokens.append(Token("OP", op, start))
                i += len(op)
                break
        else:
            raise SqlError(f"unexpected character {c!r}", sql, i)
    tokens.append(Token("EOF", "", n))
    return tokens


def _number(sql: str, i: int, tokens: list[Token]) -> int:
    start, n = i, len(sql)
    if sql.startswith(("0x", "0X"), i):
        i += 2
        while i < n and sql[i] in "0123456789abcdefABCDEF":
            i += 1
        if i == start + 2:
            raise SqlError("hexadecimal number has no digits", sql, start)
        tokens.append(Token("NUMBER", sql[start:i], start, int(sql[start:i], 16)))
        return i
    while i < n and _digit(sql[i]):
        i += 1
    is_float = False
    if i < n and sql[i] == "." and not (i + 1 < n and sql[i + 1] == "."):
        is_float = True
        i += 1
        while i < n and _digit(sql[i]):
            i += 1
    if i < n and sql[i] in "eE":
        j = i + 1
        if j < n and sql[j] in "+-":
            j += 1
        if j < n and _digit(sql[j]):
            is_float = True
            i = j
            while i < n and _digit(sql[i]):
                i += 1
    text = sql[start:i]
    if i < n and sql[i].isascii() and (sql[i].isalpha() or sql[i] == "_"):
        j = i
        while j < n and sql[j].isascii() and (sql[j].isalnum() or sql[j] == "_"):
            j += 1
        unit = sql[i:j]
        if is_float or unit.lower() not in DURATION_UNITS:
            raise SqlError(
                f"bad number or duration {sql[start:j]!r}; durations are written like 10s, "
                "5m, 1h, 1d, 100a (ms), 10u (us), 10b (ns)",
                sql,
                start,
            )
        tokens.append(Token("DURATION", sql[start:j], start, (int(text), unit.lower())))
        return j
    value: object = float(text) if is_float else int(text)
    tokens.append(Token("NUMBER", text, start, value))
    return i


def _string(sql: str, i: int, tokens: list[Token]) -> int:
    quote, start, n = sql[i], i, len(sql)
    i += 1
    out = []
    while True:
        if i >= n:
            raise SqlError("unterminated string", sql, start)
        c = sql[i]
        if c == "\\" and i + 1 < n:
            nxt = sql[i + 1]
            out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(nxt, nxt))
            i += 2
            continue
        if c == quote:
            if i + 1 < n and sql[i + 1] == quote:
                out.append(quote)
                i += 2
                continue
            i += 1
            break
        out.append(c)
        i += 1
    tokens.append(Token("STRING", "".join(out), start))
    return i
