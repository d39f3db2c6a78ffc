"""Writing a batch of vectors: into the target's column, or into its staging table."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Matrix
from vestige_embed.store.vector_io import BytesArray, KeyArray, VectorArray, register_binary_arrays
from vestige_embed.target import KeyType, ModelSignature, Statements


def _key_type(st: Statements) -> KeyType:
    if st.target.key_type is None:
        raise ValueError("the target's key type is unknown: resolve the target against the catalog first")
    return st.target.key_type


class VectorWriter:
    """`UPDATE ... FROM unnest(keys, vectors)` into one column, parameters in binary."""

    def __init__(self, conn: Connection, st: Statements, column: str) -> None:
        register_binary_arrays(conn)
        self.conn, self.st = conn, st
        self.key_type = _key_type(st)
        self.statement = st.write_vectors(column)

    def __call__(self, keys: list[object], vectors: Matrix) -> int:
        params = {"keys": KeyArray(self.key_type, keys), "vectors": VectorArray(vectors, self.st.target.storage)}
        return int(self.conn.execute(self.statement, params).rowcount)


class StagingWriter:
    """Upserts vectors of one model, with the content hashes they were made from; returns
    how many were staged (rows edited since they were read are left for the next pass)."""

    def __init__(self, conn: Connection, st: Statements, signature: ModelSignature) -> None:
        register_binary_arrays(conn)
        self.conn, self.st = conn, st
        self.key_type = _key_type(st)
        self.statement = st.stage_vectors(signature)

    def __call__(self, keys: list[object], hashes: list[bytes], vectors: Matrix) -> int:
        params = {
            "keys": KeyArray(self.key_type, keys),
            "vectors": VectorArray(vectors, self.st.target.storage),
            "hashes": BytesArray(hashes),
        }
        return int(self.conn.execute(self.statement, params).rowcount)


class StagedRowsWriter:
    """Stages vectors of one model for rows the caller has just written (the write contract)."""

    def __init__(self, conn: Connection, st: Statements, signature: ModelSignature) -> None:
        register_binary_arrays(conn)
        self.conn, self.st = conn, st
        self.key_type = _key_type(st)
        self.statement = st.stage_written_rows(signature)

    def __call__(self, keys: list[object], vectors: Matrix) -> None:
        params = {"keys": KeyArray(self.key_type, keys), "vectors": VectorArray(vectors, self.st.target.storage)}
        self.conn.execute(self.statement, params)
