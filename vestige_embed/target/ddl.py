"""PostgreSQL statements SQLAlchemy has no construct for, as constructs.

Each compiles through the dialect's identifier preparer, so names are quoted by
SQLAlchemy; the same object runs online and prints in `alembic upgrade --sql`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import ExecutableDDLElement
from sqlalchemy.sql.compiler import DDLCompiler, SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable


class LockTable(ExecutableDDLElement):
    """`LOCK TABLE t IN <mode> MODE`."""

    def __init__(self, table: sa.Table, mode: str) -> None:
        self.table, self.mode = table, mode


class AlterColumnType(ExecutableDDLElement):
    """`ALTER TABLE t ALTER COLUMN c TYPE <type>` (pgvector casts, and checks, every row)."""

    def __init__(self, table: sa.Table, column: str, type_: sa.types.TypeEngine[Any]) -> None:
        self.table, self.column, self.type_ = table, column, type_


class AddColumn(ExecutableDDLElement):
    """`ALTER TABLE t ADD COLUMN [IF NOT EXISTS] <column spec>`."""

    def __init__(self, table: sa.Table, column: sa.Column[Any], *, if_not_exists: bool = False) -> None:
        self.table, self.column, self.if_not_exists = table, column, if_not_exists


class DropColumn(ExecutableDDLElement):
    """`ALTER TABLE t DROP COLUMN [IF EXISTS] c` (catalog-only; space is reclaimed by a rewrite)."""

    def __init__(self, table: sa.Table, column: str, *, if_exists: bool = False) -> None:
        self.table, self.column, self.if_exists = table, column, if_exists


class DropDefault(ExecutableDDLElement):
    def __init__(self, table: sa.Table, column: str) -> None:
        self.table, self.column = table, column


class RenameColumn(ExecutableDDLElement):
    def __init__(self, table: sa.Table, old: str, new: str) -> None:
        self.table, self.old, self.new = table, old, new


class RenameIndex(ExecutableDDLElement):
    """`ALTER INDEX [schema.]old RENAME TO new` (an index stays in its table's schema)."""

    def __init__(self, schema: str | None, old: str, new: str) -> None:
        self.schema, self.old, self.new = schema, old, new


class CreateUniqueIndexIfNotExists(ExecutableDDLElement):
    def __init__(self, table: sa.Table, name: str, columns: list[str]) -> None:
        self.table, self.name, self.columns = table, name, columns


class Analyze(ExecutableDDLElement):
    def __init__(self, table: sa.Table) -> None:
        self.table = table


class GuardBlock(ExecutableDDLElement):
    """A `DO` block that, check by check, raises the check's message when its count is > 0.

    The offline script's guard: PL/pgSQL is the only way to stop a psql script on a
    condition, and RAISE is the only way to say why. A message may use `missing`, the
    count. Checks run in order, so a later one may rely on an earlier one (a table exists).
    """

    def __init__(self, checks: list[tuple[sa.Select[Any], sa.ColumnElement[Any]]]) -> None:
        self.checks = checks


class WhenTrue(ExecutableDDLElement):
    """Runs `statement` only when `condition` (a one-value SELECT) is true, in a `DO` block:
    how a script decides at run time what the online path decides from the catalog."""

    def __init__(self, condition: sa.Select[Any], statement: ExecutableDDLElement) -> None:
        self.condition, self.statement = condition, statement


@compiles(WhenTrue)
def _when_true(element: WhenTrue, compiler: DDLCompiler, **kw: Any) -> str:
    literal = {"literal_binds": True}
    condition = element.condition.compile(dialect=compiler.dialect, compile_kwargs=literal)
    statement = element.statement.compile(dialect=compiler.dialect, compile_kwargs=literal)
    return (
        f"DO $vestige_if$\nBEGIN\n    IF ({condition}) THEN\n"
        f"        EXECUTE $vestige_sql${statement}$vestige_sql$;\n    END IF;\nEND\n$vestige_if$"
    )


class DeclareCursor(Executable, ClauseElement):
    """`DECLARE name NO SCROLL CURSOR FOR <query>`: compiled by the statement compiler, so the
    query's bound values travel as parameters."""

    inherit_cache = False

    def __init__(self, name: str, query: sa.Select[Any]) -> None:
        self.name, self.query = name, query


class FetchCursor(ExecutableDDLElement):
    """`FETCH FORWARD count FROM name`."""

    def __init__(self, name: str, count: int) -> None:
        self.name, self.count = name, count


class CloseCursor(ExecutableDDLElement):
    def __init__(self, name: str) -> None:
        self.name = name


@compiles(DeclareCursor)
def _declare_cursor(element: DeclareCursor, compiler: SQLCompiler, **kw: Any) -> str:
    query = compiler.process(element.query, **kw)
    return f"DECLARE {compiler.preparer.quote(element.name)} NO SCROLL CURSOR FOR {query}"


@compiles(FetchCursor)
def _fetch_cursor(element: FetchCursor, compiler: DDLCompiler, **kw: Any) -> str:
    return f"FETCH FORWARD {int(element.count)} FROM {_quote(compiler, element.name)}"


@compiles(CloseCursor)
def _close_cursor(element: CloseCursor, compiler: DDLCompiler, **kw: Any) -> str:
    return f"CLOSE {_quote(compiler, element.name)}"


class CreateExtension(ExecutableDDLElement):
    """`CREATE EXTENSION IF NOT EXISTS name`."""

    def __init__(self, name: str) -> None:
        self.name = name


class CreateDatabase(ExecutableDDLElement):
    def __init__(self, name: str) -> None:
        self.name = name


@compiles(CreateExtension)
def _create_extension(element: CreateExtension, compiler: DDLCompiler, **kw: Any) -> str:
    return f"CREATE EXTENSION IF NOT EXISTS {_quote(compiler, element.name)}"


@compiles(CreateDatabase)
def _create_database(element: CreateDatabase, compiler: DDLCompiler, **kw: Any) -> str:
    return f"CREATE DATABASE {_quote(compiler, element.name)}"


class Comment(ExecutableDDLElement):
    """`-- text` lines: the offline script's explanations (Alembic ends it with `;`, inside the comment)."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines


@compiles(Comment)
def _comment(element: Comment, compiler: DDLCompiler, **kw: Any) -> str:
    return "\n".join(f"-- {line}".rstrip() for line in element.lines)


def _table(compiler: DDLCompiler, table: sa.Table) -> str:
    return compiler.preparer.format_table(table)


def _quote(compiler: DDLCompiler, name: str) -> str:
    return compiler.preparer.quote(name)


@compiles(LockTable)
def _lock(element: LockTable, compiler: DDLCompiler, **kw: Any) -> str:
    return f"LOCK TABLE {_table(compiler, element.table)} IN {element.mode} MODE"


@compiles(AlterColumnType)
def _alter_type(element: AlterColumnType, compiler: DDLCompiler, **kw: Any) -> str:
    type_ = compiler.type_compiler.process(element.type_)
    return f"ALTER TABLE {_table(compiler, element.table)} ALTER COLUMN {_quote(compiler, element.column)} TYPE {type_}"


@compiles(AddColumn)
def _add_column(element: AddColumn, compiler: DDLCompiler, **kw: Any) -> str:
    guard = "IF NOT EXISTS " if element.if_not_exists else ""
    spec = compiler.get_column_specification(element.column)
    return f"ALTER TABLE {_table(compiler, element.table)} ADD COLUMN {guard}{spec}"


@compiles(DropColumn)
def _drop_column(element: DropColumn, compiler: DDLCompiler, **kw: Any) -> str:
    guard = "IF EXISTS " if element.if_exists else ""
    return f"ALTER TABLE {_table(compiler, element.table)} DROP COLUMN {guard}{_quote(compiler, element.column)}"


@compiles(DropDefault)
def _drop_default(element: DropDefault, compiler: DDLCompiler, **kw: Any) -> str:
    return f"ALTER TABLE {_table(compiler, element.table)} ALTER COLUMN {_quote(compiler, element.column)} DROP DEFAULT"


@compiles(RenameColumn)
def _rename_column(element: RenameColumn, compiler: DDLCompiler, **kw: Any) -> str:
    old, new = _quote(compiler, element.old), _quote(compiler, element.new)
    return f"ALTER TABLE {_table(compiler, element.table)} RENAME COLUMN {old} TO {new}"


@compiles(RenameIndex)
def _rename_index(element: RenameIndex, compiler: DDLCompiler, **kw: Any) -> str:
    old = _quote(compiler, element.old)
    if element.schema:
        old = f"{compiler.preparer.quote_schema(element.schema)}.{old}"
    return f"ALTER INDEX {old} RENAME TO {_quote(compiler, element.new)}"


@compiles(CreateUniqueIndexIfNotExists)
def _unique_index(element: CreateUniqueIndexIfNotExists, compiler: DDLCompiler, **kw: Any) -> str:
    columns = ", ".join(_quote(compiler, c) for c in element.columns)
    name = _quote(compiler, element.name)
    return f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {_table(compiler, element.table)} ({columns})"


@compiles(Analyze)
def _analyze(element: Analyze, compiler: DDLCompiler, **kw: Any) -> str:
    return f"ANALYZE {_table(compiler, element.table)}"


@compiles(GuardBlock)
def _guard(element: GuardBlock, compiler: DDLCompiler, **kw: Any) -> str:
    literal = {"literal_binds": True}
    body = []
    for count, message in element.checks:
        count_sql = count.compile(dialect=compiler.dialect, compile_kwargs=literal)
        message_sql = message.compile(dialect=compiler.dialect, compile_kwargs=literal)
        body.append(
            f"    missing := ({count_sql});\n"
            f"    IF missing > 0 THEN\n        RAISE EXCEPTION USING MESSAGE = {message_sql};\n    END IF;\n"
        )
    return "DO $vestige_guard$\nDECLARE\n    missing bigint;\nBEGIN\n" + "".join(body) + "END\n$vestige_guard$"
