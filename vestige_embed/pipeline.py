"""The data pass: stream rows, embed batch k+1 while batch k is written.

Memory is bounded by design: rows arrive from a server-side cursor one batch at a
time, and at most two batches (one embedding, one being written) are alive.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.errors import ReembedError
from vestige_embed.schema import knowledge_nodes

log = logging.getLogger("vestige_embed.reembed")

Batch = tuple[list[uuid.UUID], list[str]]
Writer = Callable[[list[uuid.UUID], Matrix], int]


class Progress(Protocol):
    """Receives the data pass's progress (the CLI draws a bar, or logs lines)."""

    def start(self, total: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def finish(self) -> None:
        pass


def count_rows(conn: Connection, where: sa.ColumnElement[bool] | None = None) -> int:
    """Rows of `knowledge_nodes` (matching `where`): progress totals and dry-run counts."""
    query = sa.select(sa.func.count()).select_from(knowledge_nodes)
    if where is not None:
        query = query.where(where)
    return int(conn.execute(query).scalar_one())


def stream_batches(conn: Connection, batch_size: int, where: sa.ColumnElement[bool] | None = None) -> Iterator[Batch]:
    """`(ids, contents)` in primary-key order through a server-side cursor, `batch_size` at a time."""
    t = knowledge_nodes.c
    query = sa.select(t.id, t.content).order_by(t.id).execution_options(yield_per=batch_size)
    if where is not None:
        query = query.where(where)
    with conn.execute(query) as result:
        for rows in result.partitions():
            yield [r[0] for r in rows], [r[1] for r in rows]


def check_vectors(embedder: Embedder, vectors: Matrix, count: int) -> Matrix:
    """Refuse output that would corrupt the store: wrong shape, NaN or infinity."""
    shape = (count, embedder.dimension)
    if vectors.shape != shape:
        raise ReembedError(f"embedder '{embedder.name}' returned shape {vectors.shape}, expected {shape}")
    if not np.isfinite(vectors).all():
        raise ReembedError(
            f"embedder '{embedder.name}' returned NaN or infinite values; nothing of this batch was written"
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def run_pipeline(
    batches: Iterable[Batch],
    embedder: Embedder,
    write: Writer,
    *,
    progress: Progress,
    on_batch: Callable[[], None] | None = None,
    label: str = "reembed",
) -> int:
    """Embed and write every batch; returns the rows written. `on_batch` runs after each write."""
    written = 0
    number = 0

    def finish(ids: list[uuid.UUID], future: Future[Matrix]) -> None:
        nonlocal written, number
        vectors = check_vectors(embedder, future.result(), len(ids))
        count = write(ids, vectors)
        if on_batch is not None:
            on_batch()
        number += 1
        written += count
        log.info("%s: wrote batch %d (%d rows)", label, number, count)
        progress.advance(len(ids))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vestige-embed") as pool:
        pending: tuple[list[uuid.UUID], Future[Matrix]] | None = None
        for ids, texts in batches:
            future = pool.submit(embedder.embed_batch, texts)
            if pending is not None:
                finish(*pending)
            pending = (ids, future)
        if pending is not None:
            finish(*pending)
    return written
