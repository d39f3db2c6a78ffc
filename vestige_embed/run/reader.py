"""Rows to embed, a batch at a time.

Two readers: a server-side cursor inside the run's own transaction (under its table
lock), in content order, read ahead in pipeline mode with the writes (`store.pipelined`,
`pipeline.run_locked_pass`); and key-paged reads (`key > :after ... LIMIT n`), each its
own short transaction, for passes that run while the application works: no snapshot
outlives a batch, so vacuum and `CREATE INDEX CONCURRENTLY` are never held up by a long pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.store.transactions import commit
from vestige_embed.target import Statements


@dataclass(frozen=True)
class Batch:
    """Keys (a locked pass's: maybe the rows' addresses), the texts to embed and (for
    staging) their content hashes, computed by the server."""

    keys: list[Any]
    texts: list[str]
    hashes: list[bytes]


def _batch(rows: Any, with_hash: bool) -> Batch:
    hashes = [bytes(r[2]) for r in rows] if with_hash else []
    return Batch([r[0] for r in rows], [r[1] for r in rows], hashes)


def page_batches(
    conn: Connection,
    st: Statements,
    batch_size: int,
    where: sa.ColumnElement[bool] | None = None,
    *,
    with_hash: bool = False,
    where_after: sa.ColumnElement[bool] | None = None,
) -> Iterator[Batch]:
    """Key-paged, each page read in its own transaction (committed before it is yielded).
    `where_after` is `where` for the pages past `:after`, when it can use the bound too."""
    after: Any = None
    first = st.rows_page(where, first=True, with_hash=with_hash)
    later = st.rows_page(where if where_after is None else where_after, first=False, with_hash=with_hash)
    while True:
        params: dict[str, Any] = {"size": batch_size}
        if after is not None:
            params["after"] = after
        rows = conn.execute(first if after is None else later, params).all()
        commit(conn)
        if not rows:
            return
        after = rows[-1][0]
        yield _batch(rows, with_hash)
        if len(rows) < batch_size:
            return
