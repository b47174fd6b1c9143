"""The errors tsdb raises: every one is a SeptetError, so the CLI prints one line and exits 2."""

from __future__ import annotations

from septet.errors import SeptetError


class TsdbError(SeptetError):
    """Something a user of the database can fix: a missing table, a bad value, a full disk."""


class SqlError(TsdbError):
    """Malformed or unsupported SQL; the message names the position and the offending token."""

    def __init__(self, message: str, sql: str | None = None, position: int | None = None):
        if sql is not None and position is not None:
            line = sql.count("\n", 0, position) + 1
            column = position - (sql.rfind("\n", 0, position) + 1) + 1
            message = f"{message} (at line {line}, column {column}, offset {position})"
        super().__init__(message)
        self.sql = sql
        self.position = position


class CorruptionError(TsdbError):
    """A data file failed its checksum: the database directory was damaged outside tsdb."""
