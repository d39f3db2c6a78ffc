"""Write paths the engine does not use, kept to measure the one it does against them.

- binary COPY into a temp table, `ANALYZE`, one `UPDATE ... FROM` (two round trips and
  a temp table per batch);
- one UPDATE per row with pgvector's text format (the fallback for drivers without
  binary parameters).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from _bench_db import STORE
from pgvector.sqlalchemy import VECTOR
from psycopg import sql
from sqlalchemy.schema import CreateTable

from vestige_embed.target.ddl import Analyze

_COPY_TEMP = sa.Table(
    "vestige_copy_batch",
    sa.MetaData(),
    sa.Column("id", sa.Uuid),
    sa.Column("embedding", VECTOR()),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DELETE ROWS",
)


def write_copy(conn: sa.Connection, column: str, ids: Sequence[uuid.UUID], vectors: npt.NDArray[np.float32]) -> int:
    from pgvector.psycopg import register_vector

    driver = conn.connection.driver_connection
    assert driver is not None
    register_vector(driver)
    conn.execute(CreateTable(_COPY_TEMP, if_not_exists=True))
    conn.execute(_COPY_TEMP.delete())
    copy_sql = sql.SQL("COPY {} (id, embedding) FROM STDIN WITH (FORMAT BINARY)").format(
        sql.Identifier(_COPY_TEMP.name)
    )
    with driver.cursor() as cur, cur.copy(copy_sql) as copy:
        copy.set_types(["uuid", "vector"])
        for i, v in zip(ids, vectors, strict=True):
            copy.write_row((i, v))
    conn.execute(Analyze(_COPY_TEMP))
    t, s = STORE.table, _COPY_TEMP
    result = conn.execute(t.update().values({column: s.c.embedding}).where(t.c.id == s.c.id))
    return int(result.rowcount)


def write_per_row(conn: sa.Connection, column: str, ids: Sequence[uuid.UUID], vectors: npt.NDArray[np.float32]) -> int:
    table = sa.table(STORE.table.name, sa.column("id", sa.Uuid), sa.column(column, VECTOR()))
    stmt = table.update().values({column: sa.bindparam("v")}).where(table.c.id == sa.bindparam("i"))
    conn.execute(stmt, [{"i": i, "v": v} for i, v in zip(ids, vectors, strict=True)])
    return len(ids)
