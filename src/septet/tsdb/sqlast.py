"""The syntax tree of tsdb's SQL: expressions and statements as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class Expr:
    """Base of expression nodes."""


@dataclass(frozen=True)
class Literal(Expr):
    value: Any  # int, float, str, bool or None


@dataclass(frozen=True)
class Duration(Expr):
    count: int
    unit: str  # b u a s m h d w n y

    @property
    def text(self) -> str:
        return f"{self.count}{self.unit}"


@dataclass(frozen=True)
class Now(Expr):
    today: bool = False


@dataclass(frozen=True)
class Param(Expr):
    index: int


@dataclass(frozen=True)
class ColumnRef(Expr):
    name: str
    table: str | None = None


@dataclass(frozen=True)
class Star(Expr):
    table: str | None = None


@dataclass(frozen=True)
class Unary(Expr):
    op: str  # '-', '+', 'NOT'
    operand: Expr


@dataclass(frozen=True)
class Binary(Expr):
    op: str  # + - * / % = != < <= > >= AND OR LIKE NOT LIKE MATCH NMATCH || & |
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Between(Expr):
    expr: Expr
    low: Expr
    high: Expr
    negated: bool = False


@dataclass(frozen=True)
class InList(Expr):
    expr: Expr
    values: tuple[Expr, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull(Expr):
    expr: Expr
    negated: bool = False


@dataclass(frozen=True)
class Func(Expr):
    name: str  # upper case
    args: tuple[Expr, ...]
    distinct: bool = False


@dataclass(frozen=True)
class Cast(Expr):
    expr: Expr
    type: str


@dataclass(frozen=True)
class Case(Expr):
    operand: Expr | None
    whens: tuple[tuple[Expr, Expr], ...]
    default: Expr | None


class Statement:
    """Base of statement nodes."""


@dataclass
class TableName:
    name: str
    db: str | None = None
    alias: str | None = None


@dataclass
class Interval:
    interval: Duration
    offset: Duration | None = None
    sliding: Duration | None = None


@dataclass
class Window:
    """STATE_WINDOW(state), SESSION(ts, tolerance), EVENT_WINDOW START WITH a END WITH b."""

    kind: str  # STATE | SESSION | EVENT
    expr: Expr | None = None  # STATE: the state; SESSION: the timestamp column
    tolerance: Duration | None = None
    start: Expr | None = None
    end: Expr | None = None


@dataclass
class Fill:
    mode: str  # NONE NULL VALUE PREV NEXT LINEAR NULL_F VALUE_F
    values: tuple[Expr, ...] = ()


@dataclass
class OrderItem:
    expr: Expr
    desc: bool = False
    nulls_first: bool | None = None


@dataclass
class Select(Statement):
    items: list[tuple[Expr, str | None]]
    source: TableName | Select | None = None
    where: Expr | None = None
    partition_by: list[Expr] = field(default_factory=list)
    interval: Interval | None = None
    window: Window | None = None  # the windows that follow the data instead of the clock
    fill: Fill | None = None
    group_by: list[Expr] = field(default_factory=list)
    having: Expr | None = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    slimit: int | None = None
    soffset: int = 0
    distinct: bool = False
    source_alias: str | None = None


@dataclass
class CreateDatabase(Statement):
    name: str
    if_not_exists: bool
    options: dict[str, Any]


@dataclass
class DropDatabase(Statement):
    name: str
    if_exists: bool


@dataclass
class UseDatabase(Statement):
    name: str


@dataclass
class ColumnDef:
    name: str
    type: str


@dataclass
class CreateStable(Statement):
    table: TableName
    columns: list[ColumnDef]
    tags: list[ColumnDef]
    if_not_exists: bool


@dataclass
class CreateTable(Statement):
    table: TableName
    columns: list[ColumnDef]
    if_not_exists: bool


@dataclass
class ChildSpec:
    table: TableName
    stable: TableName
    tag_names: list[str] | None
    tag_values: list[Expr]


@dataclass
class CreateChildTables(Statement):
    children: list[ChildSpec]
    if_not_exists: bool


@dataclass
class DropTables(Statement):
    tables: list[TableName]
    if_exists: bool
    stable: bool


@dataclass
class AlterTable(Statement):
    table: TableName
    action: str  # add, drop, set_tag
    is_tag: bool
    column: str
    type: str | None = None
    value: Expr | None = None
    stable: bool = True


@dataclass
class Show(Statement):
    what: str  # DATABASES, STABLES, TABLES
    db: str | None = None
    like: str | None = None


@dataclass
class Describe(Statement):
    table: TableName


@dataclass
class InsertTarget:
    table: TableName
    using: TableName | None
    tag_names: list[str] | None
    tag_values: list[Expr]
    columns: list[str] | None
    rows: list[list[Expr]]


@dataclass
class Insert(Statement):
    targets: list[InsertTarget]


@dataclass
class Delete(Statement):
    table: TableName
    where: Expr | None


@dataclass
class Flush(Statement):
    db: str | None


@dataclass
class CreateUser(Statement):
    name: str
    password: str
    read_only: bool = False


@dataclass
class DropUser(Statement):
    name: str


@dataclass
class AlterUser(Statement):
    name: str
    password: str


@dataclass
class Grant(Statement):
    """GRANT|REVOKE READ|WRITE|ALL ON *.* TO|FROM user (privileges are server-wide)."""

    revoke: bool
    privilege: str  # READ WRITE ALL
    user: str


@dataclass
class CreateStream(Statement):
    name: str
    target: TableName
    query: Select
    sql: str  # the SELECT's text, kept to persist the stream
    if_not_exists: bool = False


@dataclass
class CreateTopic(Statement):
    name: str
    query: Select
    sql: str
    if_not_exists: bool = False


@dataclass
class DropObject(Statement):
    kind: str  # STREAM or TOPIC
    name: str
    if_exists: bool = False
