"""What the database says about a target: its columns, index, staging and registry shape.

Read-only. `resolve_target` is where a team's table meets the target that names it:
every mismatch is reported here, before anything changes.
"""

from __future__ import annotations

import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.errors import ReembedError
from vestige_embed.target import Storage, Target
from vestige_embed.target.statements import (
    LEGACY_REGISTRY_ID,
    STAGED_MODEL_COLUMNS,
    Statements,
    column_info,
    key_type_of,
    registry_relation,
    relation_exists,
)


class RegistryShape(enum.Enum):
    ABSENT = "absent"
    #: vestige-embed 0.1's single row (`id = 1`), before one row per target.
    LEGACY = "legacy"
    #: One row per target, without the staged-model columns.
    OUTDATED = "outdated"
    CURRENT = "current"


def column_type(conn: Connection, st: Statements, column: str | None = None) -> tuple[str, int | None] | None:
    """`(type name, dimension)` of a column (dimension None without a typmod); None if absent."""
    row = conn.execute(st.column_info(column)).first()
    if row is None:
        return None
    return str(row[0]), (None if row[1] is None or row[1] < 0 else int(row[1]))


def column_dimension(conn: Connection, st: Statements, column: str | None = None) -> int | None:
    found = column_type(conn, st, column)
    return None if found is None else found[1]


def column_exists(conn: Connection, st: Statements, column: str) -> bool:
    return column_type(conn, st, column) is not None


def index_validity(conn: Connection, st: Statements, name: str | None = None) -> bool | None:
    """True valid, False INVALID (an interrupted CONCURRENTLY build), None absent."""
    value = conn.execute(st.index_validity(name)).scalar()
    return None if value is None else bool(value)


def index_definition(conn: Connection, st: Statements, name: str | None = None) -> str | None:
    value = conn.execute(st.index_definition(name)).scalar()
    return None if value is None else str(value)


def staging_exists(conn: Connection, st: Statements) -> bool:
    return bool(conn.execute(st.staging_exists()).scalar_one())


def rows_stay_put(conn: Connection, st: Statements) -> bool:
    """True when this transaction may write rows back to the addresses it read them at
    (`Statements.rows_stay_put`)."""
    return bool(conn.execute(st.rows_stay_put()).scalar())


def count(conn: Connection, query: sa.Select[Any]) -> int:
    return int(conn.execute(query).scalar_one())


def registry_shape(conn: Connection) -> RegistryShape:
    if not conn.execute(relation_exists(registry_relation())).scalar_one():
        return RegistryShape.ABSENT
    if conn.execute(column_info(registry_relation(), LEGACY_REGISTRY_ID)).first() is not None:
        return RegistryShape.LEGACY
    staged = conn.execute(column_info(registry_relation(), STAGED_MODEL_COLUMNS[0])).first() is not None
    return RegistryShape.CURRENT if staged else RegistryShape.OUTDATED


def resolve_target(conn: Connection, target: Target) -> Target:
    """The target with its key type read from the catalog; refuses what cannot work."""
    st = Statements(target)
    if not conn.execute(relation_exists(st.relation())).scalar_one():
        raise ReembedError(
            f"table {target.table} does not exist in this database: check the target's table name (--table), "
            "or run `alembic upgrade head` on this database to create the store"
        )
    key = column_type(conn, st, target.key)
    if key is None:
        raise ReembedError(f"{target.table} has no column {target.key} (the target's key); name its primary key")
    key_type = key_type_of(key[0])
    if key_type is None:
        raise ReembedError(
            f"{target.table}.{target.key} is {key[0]}; vestige-embed keys rows by uuid, bigint or text. "
            "Name another unique column as the key"
        )
    embedding = column_type(conn, st)
    if embedding is None:
        raise ReembedError(f"{target.table} has no column {target.embedding} (the target's embedding column)")
    if embedding[0] not in {s.value for s in Storage}:
        raise ReembedError(
            f"{target.describe()} is {embedding[0]}, not a pgvector vector or halfvec column; "
            "is the pgvector extension installed and the column created with it?"
        )
    if target.content_is_column and column_type(conn, st, target.content) is None:
        raise ReembedError(
            f"{target.table} has no column {target.content} (the target's content); "
            "name a text column or give a SQL expression over the row"
        )
    return target if target.key_type is key_type else target.with_key_type(key_type)


def require_alter_rights(conn: Connection, st: Statements) -> None:
    """Refuse, before any work, a role that could stage every vector but not make the change:
    the swap alters the table, and only its owner's role may."""
    row = conn.execute(st.alter_rights()).first()
    if row is not None and not row[2]:
        raise ReembedError(
            f"role {row[0]} may not alter {st.target.table} (owner: {row[1]}); a model change alters the "
            f"column and rebuilds its index. Connect as {row[1]}, or as a role that is a member of it. "
            "Nothing was changed"
        )
