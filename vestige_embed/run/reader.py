"""Rows to embed, a batch at a time, in key order, through a server-side cursor."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.target import Statements


@dataclass(frozen=True)
class Batch:
    """Keys, the texts to embed and (for staging) their content hashes, computed by the server."""

    keys: list[Any]
    texts: list[str]
    hashes: list[bytes]


def stream_batches(
    conn: Connection,
    st: Statements,
    batch_size: int,
    where: sa.ColumnElement[bool] | None = None,
    *,
    with_hash: bool = False,
) -> Iterator[Batch]:
    """Memory stays bounded: only one batch of rows is held at a time."""
    query = st.rows(where, with_hash=with_hash).execution_options(yield_per=batch_size)
    with conn.execute(query) as result:
        for rows in result.partitions():
            hashes = [bytes(r[2]) for r in rows] if with_hash else []
            yield Batch([r[0] for r in rows], [r[1] for r in rows], hashes)
