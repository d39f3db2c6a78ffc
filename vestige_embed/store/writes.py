"""Writing a batch of vectors: into the target's column, or into its staging table."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import UpdateBase

from vestige_embed.embedders.base import Matrix
from vestige_embed.store.vector_io import AddressArray, BytesArray, KeyArray, VectorArray, register_binary_arrays
from vestige_embed.target import KeyType, ModelSignature, Statements


class _Writer:
    """One statement, built once; keys and vectors sent as binary arrays."""

    def __init__(self, conn: Connection, st: Statements, statement: UpdateBase, *, by_address: bool = False) -> None:
        self.key_type: KeyType = st.target.resolved_key_type
        register_binary_arrays(conn)
        self.conn, self.statement, self.by_address = conn, statement, by_address
        self.storage = st.target.storage

    def params(self, keys: list[Any], vectors: Matrix, **more: object) -> dict[str, object]:
        rows = AddressArray(keys) if self.by_address else KeyArray(self.key_type, keys)
        return {"keys": rows, "vectors": VectorArray(vectors, self.storage), **more}

    def _execute(self, keys: list[object], vectors: Matrix, **more: object) -> int:
        return int(self.conn.execute(self.statement, self.params(keys, vectors, **more)).rowcount)


class VectorWriter(_Writer):
    """`UPDATE ... FROM unnest(keys, vectors)` into one column; `by_address`: the keys are the
    rows' addresses (`Statements.write_vectors`)."""

    def __init__(self, conn: Connection, st: Statements, column: str, *, by_address: bool = False) -> None:
        super().__init__(conn, st, st.write_vectors(column, by_address=by_address), by_address=by_address)

    def __call__(self, keys: list[object], vectors: Matrix) -> int:
        return self._execute(keys, vectors)


class StagingWriter(_Writer):
    """Upserts vectors of one model, with the content hashes they were made from; returns
    how many were staged (rows edited since they were read are left for the next pass)."""

    def __init__(self, conn: Connection, st: Statements, signature: ModelSignature) -> None:
        super().__init__(conn, st, st.stage_vectors(signature))

    def __call__(self, keys: list[object], hashes: list[bytes], vectors: Matrix) -> int:
        return self._execute(keys, vectors, hashes=BytesArray(hashes))


class StagedRowsWriter(_Writer):
    """Stages vectors of one model for rows the caller has just written (the write contract)."""

    def __init__(self, conn: Connection, st: Statements, signature: ModelSignature) -> None:
        super().__init__(conn, st, st.stage_written_rows(signature))

    def __call__(self, keys: list[object], vectors: Matrix) -> None:
        self._execute(keys, vectors)
