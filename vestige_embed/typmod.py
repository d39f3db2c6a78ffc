"""The vector column's typmod (its dimension) and the two ways to change it.

Approach B (the default): `ALTER ... TYPE vector` (catalog-only), write vectors of the
new size, `ALTER ... TYPE vector(N)`. The tightening rewrites the table and checks every
row: it is the integrity gate. The relaxation is probed through `pg_attribute.atttypmod`
and, where a pgvector build refuses or ignores it, approach C takes over: add a column
already typed `vector(N)`, write into it, drop the old column, rename the new one.
"""

from __future__ import annotations

import enum
import logging

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from vestige_embed.schema import EMBEDDING, KNOWLEDGE_NODES, NEXT_EMBEDDING, quoted

log = logging.getLogger(__name__)


class TypmodApproach(enum.StrEnum):
    """`auto`: relax/tighten with approach C as fallback; `new_column`: approach C always."""

    AUTO = "auto"
    NEW_COLUMN = "new_column"


def column_dimension(conn: Connection, column: str = EMBEDDING) -> int | None:
    """The column's declared dimension (its atttypmod), None when it has no typmod or is absent."""
    typmod = conn.execute(
        sa.text(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = to_regclass(:table) AND attname = :column AND NOT attisdropped"
        ),
        {"table": quoted(KNOWLEDGE_NODES), "column": column},
    ).scalar()
    return None if typmod is None or typmod < 0 else int(typmod)


def column_exists(conn: Connection, column: str) -> bool:
    return bool(
        conn.execute(
            sa.text(
                "SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:table) "
                "AND attname = :column AND NOT attisdropped"
            ),
            {"table": quoted(KNOWLEDGE_NODES), "column": column},
        ).first()
    )


def alter_type_sql(dimension: int | None, column: str = EMBEDDING) -> str:
    """`ALTER TABLE ... TYPE vector` (dimension None: relax) or `vector(N)` (tighten)."""
    target = "vector" if dimension is None else f"vector({dimension})"
    return f"ALTER TABLE {quoted(KNOWLEDGE_NODES)} ALTER COLUMN {quoted(column)} TYPE {target}"


def add_next_column_sql(dimension: int) -> str:
    return f"ALTER TABLE {quoted(KNOWLEDGE_NODES)} ADD COLUMN {quoted(NEXT_EMBEDDING)} vector({dimension})"


def drop_column_sql(column: str) -> str:
    return f"ALTER TABLE {quoted(KNOWLEDGE_NODES)} DROP COLUMN IF EXISTS {quoted(column)}"


def swap_next_column_sql() -> list[str]:
    """Drop the old column and give the new one its name (catalog-only, one lock)."""
    return [
        f"ALTER TABLE {quoted(KNOWLEDGE_NODES)} DROP COLUMN {quoted(EMBEDDING)}",
        f"ALTER TABLE {quoted(KNOWLEDGE_NODES)} RENAME COLUMN {quoted(NEXT_EMBEDDING)} TO {quoted(EMBEDDING)}",
    ]


def try_relax(conn: Connection) -> bool:
    """Approach B's first step in a savepoint; False (and nothing changed) if it did not take."""
    savepoint = conn.begin_nested()
    try:
        conn.execute(sa.text(alter_type_sql(None)))
    except DBAPIError as e:
        savepoint.rollback()
        log.warning("reembed: relaxing the typmod failed (%s); falling back to approach C", e.orig)
        return False
    if column_dimension(conn) is not None:
        savepoint.rollback()
        log.warning("reembed: the typmod is still set after relaxing it; falling back to approach C")
        return False
    savepoint.commit()
    return True


def prepare_new_column(conn: Connection, dimension: int) -> None:
    """Approach C's first step; a leftover column from an interrupted run is dropped first."""
    conn.execute(sa.text(drop_column_sql(NEXT_EMBEDDING)))
    conn.execute(sa.text(add_next_column_sql(dimension)))


def swap_new_column(conn: Connection) -> None:
    for statement in swap_next_column_sql():
        conn.execute(sa.text(statement))


def tighten(conn: Connection, dimension: int) -> None:
    conn.execute(sa.text(alter_type_sql(dimension)))
