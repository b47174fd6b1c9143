"""A recursive-descent parser for TDengine's SQL: DDL, INSERT, DELETE, SELECT, SHOW, DESCRIBE.

The only exception it raises is SqlError, whose message names the offset, line, column and
the token it did not expect.
"""

from __future__ import annotations

from septet.tsdb import sqlast as A
from septet.tsdb.catalog import normalize_type
from septet.tsdb.errors import SqlError, TsdbError
from septet.tsdb.tokenizer import Token, tokenize

# Words that end an expression or a select item (so they are not taken as aliases).
_RESERVED = {
    "SELECT",
    "FROM",
    "WHERE",
    "PARTITION",
    "GROUP",
    "ORDER",
    "BY",
    "LIMIT",
    "OFFSET",
    "SLIMIT",
    "SOFFSET",
    "INTERVAL",
    "SLIDING",
    "FILL",
    "HAVING",
    "AND",
    "OR",
    "NOT",
    "AS",
    "ASC",
    "DESC",
    "UNION",
    "VALUES",
    "USING",
    "TAGS",
    "ON",
    "IS",
    "IN",
    "LIKE",
    "BETWEEN",
    "MATCH",
    "NMATCH",
    "NULLS",
    "INTO",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "FILE",
}
_WINDOW_WORDS = {"STATE_WINDOW", "SESSION", "EVENT_WINDOW"}  # not reserved: names elsewhere
_FILL_MODES = ("NONE", "NULL", "NULL_F", "VALUE", "VALUE_F", "PREV", "NEXT", "LINEAR")
_DB_OPTIONS = {
    "KEEP",
    "DURATION",
    "PRECISION",
    "CACHEMODEL",
    "COMP",
    "COMPRESSION",
    "BUFFER",
    "VGROUPS",
    "REPLICA",
    "WAL_LEVEL",
    "WAL_FSYNC_PERIOD",
    "MAXROWS",
    "MINROWS",
    "PAGES",
    "PAGESIZE",
    "CACHESIZE",
    "STRICT",
    "SINGLE_STABLE",
    "TABLE_PREFIX",
    "TABLE_SUFFIX",
    "STT_TRIGGER",
    "WAL_RETENTION_PERIOD",
    "WAL_RETENTION_SIZE",
    "KEEP_TIME_OFFSET",
}


def parse(sql: str) -> list[A.Statement]:
    """Every statement in ``sql`` (separated by ';')."""
    try:
        return _Parser(sql).statements()
    except RecursionError:
        raise SqlError("statement is nested too deeply", sql, 0) from None
    except SqlError:
        raise
    except TsdbError as exc:  # e.g. an unknown type name, reported with where it was
        raise SqlError(str(exc), sql, None) from None


def parse_one(sql: str) -> A.Statement:
    """Exactly one statement."""
    statements = parse(sql)
    if len(statements) != 1:
        raise SqlError(f"expected one statement, found {len(statements)}", sql, 0)
    return statements[0]


class _Parser:
    def __init__(self, sql: str):
        self.sql = sql
        self.tokens = tokenize(sql)
        self.i = 0
        self.params = 0

    # ------------------------------------------------------------ token helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def error(self, expected: str, tok: Token | None = None) -> SqlError:
        tok = tok or self.tok
        return SqlError(
            f"syntax error: expected {expected} but found {tok.describe()}", self.sql, tok.pos
        )

    def at_word(self, *words: str) -> bool:
        return self.tok.is_word(*words)

    def accept_word(self, *words: str) -> bool:
        if self.tok.is_word(*words):
            self.advance()
            return True
        return False

    def expect_word(self, *words: str) -> Token:
        if not self.tok.is_word(*words):
            raise self.error(" or ".join(words))
        return self.advance()

    def at_op(self, *ops: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text in ops

    def accept_op(self, *ops: str) -> bool:
        if self.at_op(*ops):
            self.advance()
            return True
        return False

    def expect_op(self, op: str) -> Token:
        if not self.at_op(op):
            raise self.error(f"'{op}'")
        return self.advance()

    def identifier(self, what: str = "a name") -> str:
        t = self.tok
        if t.kind == "QIDENT":
            self.advance()
            return t.text
        if t.kind == "IDENT":
            self.advance()
            return t.text.lower()
        raise self.error(what)

    def table_name(self) -> A.TableName:
        first = self.identifier("a table name")
        if self.accept_op("."):
            return A.TableName(self.identifier("a table name"), first)
        return A.TableName(first)

    def integer(self, what: str = "an integer") -> int:
        neg = self.accept_op("-")
        t = self.tok
        if t.kind != "NUMBER" or not isinstance(t.value, int):
            raise self.error(what)
        self.advance()
        return -t.value if neg else t.value  # type: ignore[operator]

    # ------------------------------------------------------------ statements
    def statements(self) -> list[A.Statement]:
        out: list[A.Statement] = []
        while True:
            while self.accept_op(";"):
                pass
            if self.tok.kind == "EOF":
                break
            out.append(self.statement())
            if self.tok.kind != "EOF" and not self.at_op(";"):
                raise self.error("';' or the end of the statement")
        if not out:
            raise SqlError("empty statement: nothing to execute", self.sql, 0)
        return out

    def statement(self) -> A.Statement:
        t = self.tok
        if t.is_word("SELECT"):
            return self.select()
        if t.is_word("CREATE"):
            return self.create()
        if t.is_word("DROP"):
            return self.drop()
        if t.is_word("USE"):
            self.advance()
            return A.UseDatabase(self.identifier("a database name"))
        if t.is_word("INSERT"):
            return self.insert()
        if t.is_word("DELETE"):
            self.advance()
            self.expect_word("FROM")
            table = self.table_name()
            where = self.expr() if self.accept_word("WHERE") else None
            return A.Delete(table, where)
        if t.is_word("SHOW"):
            return self.show()
        if t.is_word("DESCRIBE", "DESC"):
            self.advance()
            return A.Describe(self.table_name())
        if t.is_word("ALTER"):
            return self.alter()
        if t.is_word("GRANT", "REVOKE"):
            return self.grant()
        if t.is_word("FLUSH"):
            self.advance()
            self.expect_word("DATABASE")
            return A.Flush(self.identifier("a database name"))
        raise self.error(
            "a statement (SELECT, INSERT, CREATE, DROP, ALTER, DELETE, SHOW, DESCRIBE, USE)"
        )

    def if_not_exists(self) -> bool:
        if self.accept_word("IF"):
            self.expect_word("NOT")
            self.expect_word("EXISTS")
            return True
        return False

    def if_exists(self) -> bool:
        if self.accept_word("IF"):
            self.expect_word("EXISTS")
            return True
        return False

    def password(self) -> str:
        self.expect_word("PASS")
        if self.tok.kind != "STRING":
            raise self.error("a password string in quotes")
        return self.advance().text

    def grant(self) -> A.Statement:
        revoke = self.expect_word("GRANT", "REVOKE").text.upper() == "REVOKE"
        privilege = self.expect_word("READ", "WRITE", "ALL").text.upper()
        self.expect_word("ON")
        self.expect_op("*")
        self.expect_op(".")
        self.expect_op("*")
        self.expect_word("FROM" if revoke else "TO")
        return A.Grant(revoke, privilege, self.identifier("a user name"))

    def create(self) -> A.Statement:
        self.expect_word("CREATE")
        if self.at_word("STREAM", "TOPIC"):
            kind = self.advance().text.upper()
            ine = self.if_not_exists()
            name = self.identifier(f"a {kind.lower()} name")
            target = None
            if kind == "STREAM":
                # TDengine's trigger options are accepted; streams here refresh on every write.
                while self.at_word("TRIGGER", "WATERMARK", "IGNORE", "FILL_HISTORY"):
                    self.advance()
                    while not self.at_word("INTO") and self.tok.kind != "EOF":
                        self.advance()
                self.expect_word("INTO")
                target = self.table_name()
            self.expect_word("AS")
            start = self.tok.pos
            query = self.select()
            text = self.sql[start : self.tok.pos].strip()
            if kind == "STREAM":
                return A.CreateStream(name, target, query, text, ine)
            return A.CreateTopic(name, query, text, ine)
        if self.accept_word("USER"):
            name = self.identifier("a user name")
            password = self.password()
            read_only = False
            if self.accept_word("READONLY"):
                read_only = True
            return A.CreateUser(name, password, read_only)
        if self.accept_word("DATABASE"):
            ine = self.if_not_exists()
            name = self.identifier("a database name")
            return A.CreateDatabase(name, ine, self.database_options())
        if self.accept_word("STABLE"):
            ine = self.if_not_exists()
            table = self.table_name()
            columns = self.column_defs()
            self.expect_word("TAGS")
            tags = self.column_defs()
            return A.CreateStable(table, columns, tags, ine)
        if self.accept_word("TABLE"):
            ine = self.if_not_exists()
            table = self.table_name()
            if self.at_word("USING"):
                children = [self.child_spec(table)]
                while self.tok.kind in ("IDENT", "QIDENT") and not self.at_op(";"):
                    if self.accept_word("IF"):
                        self.expect_word("NOT")
                        self.expect_word("EXISTS")
                    children.append(self.child_spec(self.table_name()))
                return A.CreateChildTables(children, ine)
            columns = self.column_defs()
            if self.at_word("TAGS"):
                self.advance()
                return A.CreateStable(table, columns, self.column_defs(), ine)
            return A.CreateTable(table, columns, ine)
        raise self.error("DATABASE, STABLE or TABLE")

    def child_spec(self, table: A.TableName) -> A.ChildSpec:
        self.expect_word("USING")
        stable = self.table_name()
        names = self.name_list() if self.at_op("(") else None
        self.expect_word("TAGS")
        values = self.value_list()
        return A.ChildSpec(table, stable, names, values)

    def name_list(self) -> list[str]:
        self.expect_op("(")
        names = [self.identifier("a column name")]
        while self.accept_op(","):
            names.append(self.identifier("a column name"))
        self.expect_op(")")
        return names

    def value_list(self) -> list[A.Expr]:
        self.expect_op("(")
        values = [self.expr()]
        while self.accept_op(","):
            values.append(self.expr())
        self.expect_op(")")
        return values

    def database_options(self) -> dict[str, object]:
        options: dict[str, object] = {}
        while self.tok.kind == "IDENT" and self.tok.text.upper() in _DB_OPTIONS:
            key = self.advance().text.upper()
            t = self.tok
            if key == "KEEP":
                values = [self.option_value()]
                while self.accept_op(","):
                    values.append(self.option_value())
                options[key] = values[-1]
            elif t.kind in ("NUMBER", "DURATION", "STRING"):
                options[key] = self.option_value()
            elif t.kind == "IDENT":
                options[key] = self.advance().text.lower()
            else:
                raise self.error(f"a value for {key}")
        if self.tok.kind == "IDENT" and not self.at_op(";"):
            raise SqlError(
                f"unknown database option '{self.tok.text}'; the options are KEEP, DURATION, "
                "PRECISION, CACHEMODEL, COMP and TDengine's tuning options",
                self.sql,
                self.tok.pos,
            )
        return options

    def option_value(self) -> object:
        t = self.advance()
        if t.kind == "NUMBER":
            return t.value
        if t.kind == "DURATION":
            return A.Duration(*t.value)  # type: ignore[misc]
        if t.kind == "STRING":
            return t.text
        raise self.error("a number, a duration or a string", t)

    def column_defs(self) -> list[A.ColumnDef]:
        self.expect_op("(")
        defs = [self.column_def()]
        while self.accept_op(","):
            defs.append(self.column_def())
        self.expect_op(")")
        return defs

    def column_def(self) -> A.ColumnDef:
        name = self.identifier("a column name")
        return A.ColumnDef(name, self.type_name())

    def type_name(self) -> str:
        t = self.tok
        if t.kind != "IDENT":
            raise self.error("a data type")
        self.advance()
        words = [t.text.upper()]
        if self.at_word("UNSIGNED"):
            words.append(self.advance().text.upper())
        length = None
        if self.accept_op("("):
            length = self.integer("a length")
            self.expect_op(")")
        try:
            return normalize_type(" ".join(words), length)
        except TsdbError as exc:
            raise SqlError(str(exc), self.sql, t.pos) from None

    def drop(self) -> A.Statement:
        self.expect_word("DROP")
        if self.accept_word("USER"):
            return A.DropUser(self.identifier("a user name"))
        if self.at_word("STREAM", "TOPIC"):
            kind = self.advance().text.upper()
            ie = self.if_exists()
            return A.DropObject(kind, self.identifier(f"a {kind.lower()} name"), ie)
        if self.accept_word("DATABASE"):
            ie = self.if_exists()
            return A.DropDatabase(self.identifier("a database name"), ie)
        stable = bool(self.accept_word("STABLE"))
        if not stable:
            self.expect_word("TABLE")
        ie = self.if_exists()
        tables = [self.table_name()]
        while self.accept_op(","):
            self.accept_word("IF") and self.expect_word("EXISTS")
            tables.append(self.table_name())
        return A.DropTables(tables, ie, stable)

    def alter(self) -> A.Statement:
        self.expect_word("ALTER")
        if self.accept_word("USER"):
            name = self.identifier("a user name")
            return A.AlterUser(name, self.password())
        stable = bool(self.accept_word("STABLE"))
        if not stable:
            self.expect_word("TABLE")
        table = self.table_name()
        if self.accept_word("SET"):
            self.expect_word("TAG")
            tag = self.identifier("a tag name")
            self.expect_op("=")
            return A.AlterTable(table, "set_tag", True, tag, None, self.expr(), stable)
        action = self.expect_word("ADD", "DROP").text.lower()
        is_tag = self.expect_word("COLUMN", "TAG").text.upper() == "TAG"
        name = self.identifier("a column name")
        type_ = self.type_name() if action == "add" else None
        return A.AlterTable(table, action, is_tag, name, type_, None, stable)

    def show(self) -> A.Statement:
        self.expect_word("SHOW")
        db = None
        if self.at_word("DATABASES", "USERS", "CONNECTIONS", "STREAMS", "TOPICS"):
            return A.Show(self.advance().text.upper())
        if self.tok.kind in ("IDENT", "QIDENT") and not self.at_word("STABLES", "TABLES"):
            db = self.identifier("a database name")
            self.expect_op(".")
        what = self.expect_word("STABLES", "TABLES").text.upper()
        like = None
        if self.accept_word("LIKE"):
            if self.tok.kind != "STRING":
                raise self.error("a pattern string")
            like = self.advance().text
        return A.Show(what, db, like)

    def insert(self) -> A.Statement:
        self.expect_word("INSERT")
        self.expect_word("INTO")
        targets = [self.insert_target()]
        while self.tok.kind in ("IDENT", "QIDENT"):
            targets.append(self.insert_target())
        return A.Insert(targets)

    def insert_target(self) -> A.InsertTarget:
        table = self.table_name()
        using = None
        tag_names = None
        tag_values: list[A.Expr] = []
        if self.accept_word("USING"):
            using = self.table_name()
            tag_names = self.name_list() if self.at_op("(") else None
            self.expect_word("TAGS")
            tag_values = self.value_list()
        columns = self.name_list() if self.at_op("(") else None
        self.expect_word("VALUES")
        rows = [self.value_list()]
        while self.at_op("("):
            rows.append(self.value_list())
        return A.InsertTarget(table, using, tag_names, tag_values, columns, rows)

    # ------------------------------------------------------------ SELECT
    def select(self) -> A.Select:
        self.expect_word("SELECT")
        distinct = bool(self.accept_word("DISTINCT"))
        self.accept_word("ALL")
        items = [self.select_item()]
        while self.accept_op(","):
            items.append(self.select_item())
        q = A.Select(items, distinct=distinct)
        if self.accept_word("FROM"):
            if self.accept_op("("):
                q.source = self.select()
                self.expect_op(")")
            else:
                q.source = self.table_name()
            if self.accept_word("AS") or (
                self.tok.kind in ("IDENT", "QIDENT")
                and self.tok.text.upper() not in _RESERVED | _WINDOW_WORDS
            ):
                q.source_alias = self.identifier("an alias")
        if self.accept_word("WHERE"):
            q.where = self.expr()
        if self.accept_word("PARTITION"):
            self.expect_word("BY")
            q.partition_by = self.expr_list()
        if self.accept_word("INTERVAL"):
            self.expect_op("(")
            iv = A.Interval(self.duration())
            if self.accept_op(","):
                iv.offset = self.duration()
            self.expect_op(")")
            if self.accept_word("SLIDING"):
                self.expect_op("(")
                iv.sliding = self.duration()
                self.expect_op(")")
            q.interval = iv
            if self.accept_word("FILL"):
                q.fill = self.fill()
        elif self.accept_word("STATE_WINDOW"):
            self.expect_op("(")
            q.window = A.Window("STATE", self.expr())
            self.expect_op(")")
        elif self.accept_word("SESSION"):
            self.expect_op("(")
            column = self.expr()
            self.expect_op(",")
            q.window = A.Window("SESSION", column, self.duration())
            self.expect_op(")")
        elif self.accept_word("EVENT_WINDOW"):
            self.expect_word("START")
            self.expect_word("WITH")
            start = self.expr()
            self.expect_word("END")
            self.expect_word("WITH")
            q.window = A.Window("EVENT", start=start, end=self.expr())
        if self.accept_word("GROUP"):
            self.expect_word("BY")
            q.group_by = self.expr_list()
        if self.accept_word("HAVING"):
            q.having = self.expr()
        if self.accept_word("ORDER"):
            self.expect_word("BY")
            q.order_by = [self.order_item()]
            while self.accept_op(","):
                q.order_by.append(self.order_item())
        while self.at_word("SLIMIT", "LIMIT"):
            is_s = self.advance().text.upper() == "SLIMIT"
            count = self.integer("a row count")
            offset = 0
            if self.accept_word("SOFFSET" if is_s else "OFFSET"):
                offset = self.integer("an offset")
            elif self.accept_op(","):  # LIMIT offset, count
                offset, count = count, self.integer("a row count")
            if count < 0 or offset < 0:
                raise SqlError("LIMIT and OFFSET must not be negative", self.sql, self.tok.pos)
            if is_s:
                q.slimit, q.soffset = count, offset
            else:
                q.limit, q.offset = count, offset
        return q

    def duration(self) -> A.Duration:
        t = self.tok
        if t.kind != "DURATION":
            raise self.error("a duration such as 10s, 1m, 1h or 1d")
        self.advance()
        count, unit = t.value  # type: ignore[misc]
        if count <= 0:
            raise SqlError("a window duration must be positive", self.sql, t.pos)
        return A.Duration(count, unit)

    def fill(self) -> A.Fill:
        self.expect_op("(")
        mode_tok = self.tok
        if mode_tok.kind != "IDENT" or mode_tok.text.upper() not in _FILL_MODES:
            raise self.error("a fill mode (NONE, NULL, VALUE, PREV, NEXT, LINEAR)")
        mode = self.advance().text.upper()
        values: list[A.Expr] = []
        if mode in ("VALUE", "VALUE_F"):
            while self.accept_op(","):
                values.append(self.expr())
            if not values:
                raise self.error("the fill values after FILL(VALUE,")
        self.expect_op(")")
        return A.Fill(mode.removesuffix("_F"), tuple(values))

    def order_item(self) -> A.OrderItem:
        e = self.expr()
        desc = False
        if self.at_word("ASC", "DESC"):
            desc = self.advance().text.upper() == "DESC"
        nulls = None
        if self.accept_word("NULLS"):
            nulls = self.expect_word("FIRST", "LAST").text.upper() == "FIRST"
        return A.OrderItem(e, desc, nulls)

    def select_item(self) -> tuple[A.Expr, str | None]:
        e = self.expr()
        alias = None
        if (
            self.accept_word("AS")
            or self.tok.kind == "QIDENT"
            or (self.tok.kind == "IDENT" and self.tok.text.upper() not in _RESERVED)
        ):
            alias = self.identifier("an alias")
        return e, alias

    def expr_list(self) -> list[A.Expr]:
        out = [self.expr()]
        while self.accept_op(","):
            out.append(self.expr())
        return out

    # ------------------------------------------------------------ expressions
    def expr(self) -> A.Expr:
        return self.or_expr()

    def or_expr(self) -> A.Expr:
        e = self.and_expr()
        while self.accept_word("OR"):
            e = A.Binary("OR", e, self.and_expr())
        return e

    def and_expr(self) -> A.Expr:
        e = self.not_expr()
        while self.accept_word("AND"):
            e = A.Binary("AND", e, self.not_expr())
        return e

    def not_expr(self) -> A.Expr:
        if self.accept_word("NOT"):
            return A.Unary("NOT", self.not_expr())
        return self.comparison()

    def comparison(self) -> A.Expr:
        e = self.bit_expr()
        while True:
            if self.at_op("=", "==", "!=", "<>", "<", "<=", ">", ">="):
                op = {"==": "=", "<>": "!="}.get(self.tok.text, self.tok.text)
                self.advance()
                e = A.Binary(op, e, self.bit_expr())
                continue
            negated = False
            save = self.i
            if self.at_word("NOT"):
                self.advance()
                negated = True
            if self.accept_word("LIKE"):
                e = A.Binary("NOT LIKE" if negated else "LIKE", e, self.bit_expr())
            elif self.accept_word("MATCH", "NMATCH"):
                op = self.tokens[self.i - 1].text.upper()
                e = A.Binary(op, e, self.bit_expr())
            elif self.accept_word("IN"):
                e = A.InList(e, tuple(self.value_list()), negated)
            elif self.accept_word("BETWEEN"):
                low = self.bit_expr()
                self.expect_word("AND")
                e = A.Between(e, low, self.bit_expr(), negated)
            elif not negated and self.accept_word("IS"):
                neg = bool(self.accept_word("NOT"))
                self.expect_word("NULL")
                e = A.IsNull(e, neg)
            else:
                self.i = save
                return e

    def bit_expr(self) -> A.Expr:
        e = self.additive()
        while self.at_op("&", "|"):
            op = self.advance().text
            e = A.Binary(op, e, self.additive())
        return e

    def additive(self) -> A.Expr:
        e = self.term()
        while self.at_op("+", "-", "||"):
            op = self.advance().text
            e = A.Binary(op, e, self.term())
        return e

    def term(self) -> A.Expr:
        e = self.unary()
        while self.at_op("*", "/", "%"):
            op = self.advance().text
            e = A.Binary(op, e, self.unary())
        return e

    def unary(self) -> A.Expr:
        if self.at_op("-", "+"):
            op = self.advance().text
            operand = self.unary()
            if (
                op == "-"
                and isinstance(operand, A.Literal)
                and isinstance(operand.value, int | float)
                and not isinstance(operand.value, bool)
            ):
                return A.Literal(-operand.value)
            return A.Unary(op, operand)
        return self.primary()

    def primary(self) -> A.Expr:
        t = self.tok
        if t.kind == "NUMBER":
            self.advance()
            return A.Literal(t.value)
        if t.kind == "STRING":
            self.advance()
            return A.Literal(t.text)
        if t.kind == "DURATION":
            self.advance()
            return A.Duration(*t.value)  # type: ignore[misc]
        if t.kind == "OP":
            if t.text == "(":
                self.advance()
                if self.at_word("SELECT"):
                    raise SqlError("subqueries in expressions are not supported", self.sql, t.pos)
                e = self.expr()
                self.expect_op(")")
                return e
            if t.text == "*":
                self.advance()
                return A.Star()
            if t.text == "?":
                self.advance()
                self.params += 1
                return A.Param(self.params - 1)
            raise self.error("an expression")
        if t.kind == "QIDENT":
            self.advance()
            return self.column_tail(t.text)
        if t.kind != "IDENT":
            raise self.error("an expression")
        word = t.text.upper()
        if word == "NULL":
            self.advance()
            return A.Literal(None)
        if word in ("TRUE", "FALSE"):
            self.advance()
            return A.Literal(word == "TRUE")
        if word in ("NOW", "TODAY"):
            self.advance()
            if self.accept_op("("):
                self.expect_op(")")
            return A.Now(today=word == "TODAY")
        if word == "CAST" and self.peek().kind == "OP" and self.peek().text == "(":
            self.advance()
            self.advance()
            e = self.expr()
            self.expect_word("AS")
            type_ = self.type_name()
            self.expect_op(")")
            return A.Cast(e, type_)
        if word == "CASE":
            return self.case()
        if word in _RESERVED:
            raise self.error("an expression")
        self.advance()
        if self.at_op("("):
            return self.function(word, t)
        return self.column_tail(t.text.lower())

    def column_tail(self, name: str) -> A.Expr:
        if self.accept_op("."):
            if self.accept_op("*"):
                return A.Star(name)
            return A.ColumnRef(self.identifier("a column name"), name)
        return A.ColumnRef(name)

    def function(self, name: str, t: Token) -> A.Expr:
        self.expect_op("(")
        distinct = bool(self.accept_word("DISTINCT"))
        args: list[A.Expr] = []
        if not self.at_op(")"):
            args.append(self.expr())
            while self.accept_op(","):
                args.append(self.expr())
        self.expect_op(")")
        return A.Func(name, tuple(args), distinct)

    def case(self) -> A.Expr:
        self.expect_word("CASE")
        operand = None if self.at_word("WHEN") else self.expr()
        whens = []
        while self.accept_word("WHEN"):
            cond = self.expr()
            self.expect_word("THEN")
            whens.append((cond, self.expr()))
        if not whens:
            raise self.error("WHEN")
        default = self.expr() if self.accept_word("ELSE") else None
        self.expect_word("END")
        return A.Case(operand, tuple(whens), default)
