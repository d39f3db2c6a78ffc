"""The data pass: embed batch k+1 while batch k is written, each distinct text once.

At most two batches are alive (one embedding, one being written). Where each write
waits for the server, the embedder runs in a worker thread (numpy and onnxruntime
release the GIL, so the two overlap). Where writes are queued without waiting (the
locked pass, `store.pipelined`), it runs in the caller's thread: there is nothing to
overlap, and a thread holding the GIL (a Python embedder) would delay the connection's
every send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.errors import ReembedError
from vestige_embed.run.progress import Progress
from vestige_embed.run.reader import Batch
from vestige_embed.store import catalog
from vestige_embed.store.pipelined import PipelinedPass
from vestige_embed.target import Statements

log = logging.getLogger("vestige_embed.reembed")

Writer = Callable[[Batch, Matrix], int]
Vector = npt.NDArray[np.float32]
#: Vectors the database already holds for some of a batch's texts (staging: by content hash).
Lookup = Callable[[Batch], dict[str, Vector]]
#: A vector shorter than this has no direction: cosine distance to it is undefined.
MIN_NORM = 1e-6


def check_vectors(embedder: Embedder, vectors: Matrix, count: int) -> Matrix:
    """Refuse output that would corrupt the store: wrong shape, NaN, infinity, zero vectors."""
    shape = (count, embedder.dimension)
    if vectors.shape != shape:
        raise ReembedError(f"embedder '{embedder.name}' returned shape {vectors.shape}, expected {shape}")
    # One pass over the batch: a row's sum of squares (in float64, so no float32 value
    # overflows it) is finite exactly when all its values are, and it is the squared norm.
    squares = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
    if not np.isfinite(squares).all():
        raise ReembedError(
            f"embedder '{embedder.name}' returned NaN or infinite values; nothing of this batch was written"
        )
    zero = int((squares < MIN_NORM**2).sum())
    if zero:
        raise ReembedError(
            f"embedder '{embedder.name}' returned {zero} zero vector(s) in a batch of {count}: no distance is "
            "defined for them; nothing of this batch was written. Check the model and its input texts"
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)


class _InThisThread:
    """An executor that runs each call at once, in the caller's thread."""

    def __enter__(self) -> _InThisThread:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[[list[str]], Matrix], texts: list[str]) -> Future[Matrix]:
        future: Future[Matrix] = Future()
        try:
            future.set_result(fn(texts))
        except Exception as e:  # raised where the thread's would be: at result()
            future.set_exception(e)
        return future


@dataclass(frozen=True)
class _Todo:
    """A batch on its way: the distinct texts sent to the embedder, and what it reuses."""

    batch: Batch
    texts: list[str]
    known: dict[str, Vector]
    future: Future[Matrix] | None


def run_pipeline(
    batches: Iterable[Batch],
    embedder: Embedder,
    write: Writer,
    *,
    progress: Progress,
    on_batch: Callable[[], None] | None = None,
    label: str = "reembed",
    stored: Lookup | None = None,
    overlap: bool = True,
) -> int:
    """Embed and write every batch; returns the rows written. `on_batch` runs after each write.

    Each distinct text is embedded once: texts repeated within a batch, or met in either of
    the two batches before it, reuse that vector; `stored` (staging) finds vectors already
    in the database by content hash. Readers that sort by content bring every repeat next
    to its first, so dedupe is complete while memory holds two batches. `overlap=False`:
    embed in this thread (the writes do not wait).
    """
    written = 0
    number = 0
    embedded = 0
    last: dict[str, Vector] = {}  # texts -> vectors of the batch finished last

    def prepare(batch: Batch, pending: Batch | None) -> _Todo:
        nonlocal embedded
        known = {t: last[t] for t in batch.texts if t in last}
        if stored is not None:
            known.update(stored(batch))
        later = set(pending.texts) if pending is not None else set()
        texts = [t for t in dict.fromkeys(batch.texts) if t not in known and t not in later]
        embedded += len(texts)
        return _Todo(batch, texts, known, pool.submit(embedder.embed_batch, texts) if texts else None)

    def finish(todo: _Todo) -> None:
        nonlocal written, number, last
        batch = todo.batch
        fresh = (
            check_vectors(embedder, todo.future.result(), len(todo.texts))
            if todo.future is not None
            else np.empty((0, embedder.dimension), dtype=np.float32)
        )
        if len(todo.texts) == len(batch.texts):  # no repeats, the usual batch: already in row order
            matrix, last = fresh, dict(zip(batch.texts, fresh, strict=True))
        else:
            vectors = {**last, **todo.known, **dict(zip(todo.texts, fresh, strict=True))}
            matrix, last = np.stack([vectors[t] for t in batch.texts]), {t: vectors[t] for t in batch.texts}
        count = write(batch, matrix)
        if on_batch is not None:
            on_batch()
        number += 1
        written += count
        log.info("%s: wrote batch %d (%d rows)", label, number, count)
        progress.advance(len(batch.keys))

    pool: ThreadPoolExecutor | _InThisThread
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vestige-embed") if overlap else _InThisThread() as pool:
        pending: _Todo | None = None
        for batch in batches:
            todo = prepare(batch, pending.batch if pending is not None else None)
            if pending is not None:
                finish(pending)
            pending = todo
        if pending is not None:
            finish(pending)
    if embedded < written:
        log.info("%s: %d rows written from %d embeddings (repeated contents embedded once)", label, written, embedded)
    return written


def run_locked_pass(
    conn: Connection,
    st: Statements,
    column: str,
    embedder: Embedder,
    batch_size: int,
    where: sa.ColumnElement[bool] | None = None,
    *,
    progress: Progress,
    label: str = "reembed",
) -> int:
    """Embed and write the rows matching `where` inside the caller's transaction (under its
    lock), rows by content and writes queued (`store.pipelined`), to the rows' addresses
    where they cannot move (`catalog.rows_stay_put`); returns the rows written."""
    by_address = catalog.rows_stay_put(conn, st)
    with PipelinedPass(conn, st, column, batch_size, where, by_address=by_address) as rows:
        batches = (Batch(keys, texts, []) for keys, texts in rows.batches())
        run_pipeline(batches, embedder, lambda b, v: rows(b.keys, v), progress=progress, label=label, overlap=False)
    if rows.rows_written != rows.rows_read:  # under the lock nothing else deletes or updates a row
        raise ReembedError(
            f"{label}: {rows.rows_read - rows.rows_written} of {rows.rows_read} rows of {st.target.table} were not "
            "updated although the server took every write: a trigger skipped them (BEFORE UPDATE returning NULL), "
            "a rule replaced the UPDATE, or a row security policy hid them. They would keep the old model's "
            "vectors, so nothing was changed. Disable it for the change (ALTER TABLE ... DISABLE TRIGGER ...) "
            "and run again"
        )
    return rows.rows_written
