"""The write path: a batch of `(id, vector)` into one column with one set-based statement.

Vectors travel to PostgreSQL in binary. Formatting floats as text costs ~0.5 ms per
384-d vector on the client (16x slower than the database work), so the arrays are
wrapped in `UuidArray` / `VectorArray` and dumped by our own psycopg binary dumpers,
which build the whole PostgreSQL array in one numpy pass.

Three paths, measured by `scripts/bench_engine.py`:
- `write_unnest` (the engine's): `UPDATE ... FROM unnest(uuid[], vector[])`, built with
  SQLAlchemy Core, parameters binary;
- `write_copy`: binary COPY into a temp table, `ANALYZE`, one `UPDATE ... FROM`;
  slower here (two round trips and a temp table per batch);
- `write_per_row`: one UPDATE per row with pgvector's text format. The fallback for
  drivers without binary parameters; ~20x slower, never used by the engine.
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy.engine import Connection

from vestige_embed.schema import KNOWLEDGE_NODES, quoted

UUID_ARRAY_OID = 2951
_ARRAY_HEADER = struct.Struct(">iiIii")  # ndim, has_nulls, element oid, length, lower bound
_UUID_OID = 2950


class UuidArray:
    """A `uuid[]` parameter: ids as one contiguous byte string of 16-byte values."""

    __slots__ = ("count", "raw")

    def __init__(self, ids: Sequence[uuid.UUID]) -> None:
        self.raw = b"".join(i.bytes for i in ids)
        self.count = len(ids)


class VectorArray:
    """A `vector[]` parameter: a float32 matrix, one row per vector."""

    __slots__ = ("matrix",)

    def __init__(self, matrix: npt.NDArray[np.float32]) -> None:
        self.matrix = matrix


class _UuidArrayDumper(Dumper):
    format = Format.BINARY
    oid = UUID_ARRAY_OID

    def dump(self, obj: UuidArray) -> bytes:
        items = np.empty(obj.count, dtype=[("len", ">i4"), ("value", "V16")])
        items["len"] = 16
        items["value"] = np.frombuffer(obj.raw, dtype="V16")
        return _ARRAY_HEADER.pack(1, 0, _UUID_OID, obj.count, 1) + items.tobytes()


class _VectorArrayDumper(Dumper):
    format = Format.BINARY
    vector_oid = 0

    def dump(self, obj: VectorArray) -> bytes:
        rows, dim = obj.matrix.shape
        items = np.empty(rows, dtype=[("len", ">i4"), ("dim", ">u2"), ("unused", ">u2"), ("values", ">f4", (dim,))])
        items["len"] = 4 + 4 * dim
        items["dim"] = dim
        items["unused"] = 0
        items["values"] = obj.matrix
        return _ARRAY_HEADER.pack(1, 0, self.vector_oid, rows, 1) + items.tobytes()


class PassThrough(sa.types.UserDefinedType[Any]):
    """A bind type that hands the value to psycopg untouched (its dumper does the work)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return ""

    def bind_processor(self, dialect: sa.Dialect) -> None:
        return None


def register_binary_arrays(conn: Connection) -> None:
    """Teach this connection's psycopg adapters to send our arrays in binary."""
    driver = conn.connection.driver_connection
    assert driver is not None
    oids = conn.execute(sa.text("SELECT 'vector'::regtype::oid, 'vector[]'::regtype::oid")).one()
    dumper = type("VectorArrayDumper", (_VectorArrayDumper,), {"oid": oids[1], "vector_oid": oids[0]})
    driver.adapters.register_dumper(VectorArray, dumper)
    driver.adapters.register_dumper(UuidArray, _UuidArrayDumper)


def _pairs() -> sa.TableValuedAlias:
    return (
        sa.func.unnest(sa.bindparam("ids", type_=PassThrough()), sa.bindparam("vectors", type_=PassThrough()))
        .table_valued("id", "embedding")
        .render_derived(name="v")
    )


@functools.cache
def unnest_update(column: str) -> sa.Update:
    """`UPDATE knowledge_nodes SET <column> = v.embedding FROM unnest(:ids, :vectors) v WHERE id = v.id`."""
    table = sa.table(KNOWLEDGE_NODES, sa.column("id"), sa.column(column))
    pairs = _pairs()
    return table.update().values({column: pairs.c.embedding}).where(table.c.id == pairs.c.id)


def write_unnest(conn: Connection, column: str, ids: Sequence[uuid.UUID], vectors: npt.NDArray[np.float32]) -> int:
    """The engine's write path; `register_binary_arrays(conn)` must have run on this connection."""
    result = conn.execute(unnest_update(column), {"ids": UuidArray(ids), "vectors": VectorArray(vectors)})
    return int(result.rowcount)


_COPY_TEMP = "vestige_copy_batch"


def write_copy(conn: Connection, column: str, ids: Sequence[uuid.UUID], vectors: npt.NDArray[np.float32]) -> int:
    """Binary COPY into a temp table, then one UPDATE ... FROM (kept for the benchmark)."""
    from pgvector.psycopg import register_vector

    driver = conn.connection.driver_connection
    assert driver is not None
    register_vector(driver)
    temp, table = quoted(_COPY_TEMP), quoted(KNOWLEDGE_NODES)
    conn.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {temp} (id uuid, embedding vector) ON COMMIT DELETE ROWS"))
    conn.execute(sa.text(f"TRUNCATE {temp}"))
    with driver.cursor() as cur, cur.copy(f"COPY {temp} (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["uuid", "vector"])
        for i, v in zip(ids, vectors, strict=True):
            copy.write_row((i, v))
    conn.execute(sa.text(f"ANALYZE {temp}"))
    result = conn.execute(
        sa.text(f"UPDATE {table} t SET {quoted(column)} = s.embedding FROM {temp} s WHERE t.id = s.id")
    )
    return int(result.rowcount)


def write_per_row(conn: Connection, column: str, ids: Sequence[uuid.UUID], vectors: npt.NDArray[np.float32]) -> int:
    """One UPDATE per row, vectors as text: the documented fallback, ~20x slower."""
    table = sa.table(KNOWLEDGE_NODES, sa.column("id", sa.Uuid), sa.column(column, VECTOR()))
    stmt = table.update().values({column: sa.bindparam("v")}).where(table.c.id == sa.bindparam("i"))
    conn.execute(stmt, [{"i": i, "v": v} for i, v in zip(ids, vectors, strict=True)])
    return len(ids)
