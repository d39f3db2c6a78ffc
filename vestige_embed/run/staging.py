"""Stage, then swap: precompute the target model's vectors while search is still served.

`stage()` fills the target's staging table with one vector per row for a model, plus
the hash of the content it embedded (computed by the server, the one definition the
freshness check also uses). A staged vector is *fresh* when its signature is the
model's and its content hash matches the row's current content; a run applies fresh
vectors with one set-based UPDATE and embeds only the rest. Staging reads key-paged,
one short transaction per batch, and commits every batch: the application keeps
reading and writing, and an interrupted run resumes where it stopped.

The staging table is UNLOGGED: staged vectors can always be computed again, so staging
writes no WAL: no fsyncs added to the application's commits, no lag added to replicas.
After a server crash or on a promoted standby it is empty; the freshness check then finds
every row stale, and staging starts again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.run.context import idle_while_embedding
from vestige_embed.run.pipeline import Lookup, Vector, run_pipeline
from vestige_embed.run.progress import NoProgress, Progress
from vestige_embed.run.reader import Batch, page_batches
from vestige_embed.store import catalog
from vestige_embed.store.registry import find_registry
from vestige_embed.store.run_lock import run_lock
from vestige_embed.store.transactions import commit
from vestige_embed.store.vector_io import BytesArray
from vestige_embed.store.writes import StagingWriter
from vestige_embed.target import DEFAULT_TARGET, ModelSignature, Statements, Target

log = logging.getLogger("vestige_embed.stage")

#: Passes over rows written while staging ran, before a change takes its lock.
MAX_CATCH_UP_PASSES = 3


@dataclass(frozen=True)
class StageReport:
    rows_staged: int
    rows_already_fresh: int
    duration_secs: float

    def summary_line(self) -> str:
        return (
            f"rows_staged {self.rows_staged}  rows_already_fresh {self.rows_already_fresh}  "
            f"duration_secs {self.duration_secs:.3f}"
        )


def stage(
    conn: Connection,
    embedder: Embedder,
    *,
    target: Target = DEFAULT_TARGET,
    batch_size: int = 128,
    progress: Progress | None = None,
) -> StageReport:
    """Embed every row that has no fresh staged vector for this embedder; commit per batch.

    `conn` must not be inside a transaction the caller wants to keep: staging commits.
    The application may keep reading and writing the table meanwhile.
    """
    started = time.perf_counter()
    target = catalog.resolve_target(conn, target)
    description = f"vestige-embed: stage {target.describe()} for {embedder.name}"
    with idle_while_embedding(conn), run_lock(conn, target, description, transaction=False):
        staged, already = stage_pass(conn, Statements(target), embedder, batch_size, progress or NoProgress())
        commit(conn)
    commit(conn)  # the session setting restored on the way out
    return StageReport(staged, already, round(time.perf_counter() - started, 6))


def stage_pass(
    conn: Connection, st: Statements, embedder: Embedder, batch_size: int, progress: Progress, label: str = "stage"
) -> tuple[int, int]:
    """One pass over the rows without a fresh staged vector: (rows staged, rows already fresh)."""
    signature = embedder.signature()
    todo, already = prepare_staging(conn, st, signature)
    progress.start(todo)
    try:
        staged = stage_rows(conn, st, embedder, batch_size, progress, label=label)
    finally:
        progress.finish()
    return staged, already


def prepare_staging(conn: Connection, st: Statements, signature: ModelSignature) -> tuple[int, int]:
    """The staging table, ready for `signature`'s vectors (others' dropped); committed.
    Returns (rows to embed, rows already fresh)."""
    for statement in st.create_staging():
        conn.execute(statement)
    # Writers following the write contract stage their rows for this model from now on.
    if find_registry(conn, st.target) is not None:
        conn.execute(st.set_staged_model(signature))
    replaced = conn.execute(st.drop_staged_other_models(signature)).rowcount
    if replaced:
        log.info("stage: removed %d vectors staged for another model", replaced)
    commit(conn)
    stale = sa.not_(st.fresh_staged(signature))
    todo = catalog.count(conn, st.count_rows(stale))
    already = catalog.count(conn, st.count_rows()) - todo
    commit(conn)
    log.info(
        "stage: %d rows of %s to embed with %s, %d already staged",
        todo,
        st.target.describe(),
        signature.describe(),
        already,
    )
    return todo, already


def stage_rows(
    conn: Connection,
    st: Statements,
    embedder: Embedder,
    batch_size: int,
    progress: Progress,
    *,
    within: sa.ColumnElement[bool] | None = None,
    label: str = "stage",
) -> int:
    """Embed and stage the rows (`within`, when given) that have no fresh staged vector, key-paged,
    committing per batch; returns the rows staged. The staging table must exist."""
    signature = embedder.signature()
    stale: sa.ColumnElement[bool] = sa.not_(st.fresh_staged(signature))
    stale_after: sa.ColumnElement[bool] = sa.not_(st.fresh_staged(signature, after=True))
    if within is not None:
        stale, stale_after = sa.and_(stale, within), sa.and_(stale_after, within)
    writer = StagingWriter(conn, st, signature)

    def write(batch: Batch, vectors: Matrix) -> int:
        count = writer(batch.keys, batch.hashes, vectors)
        commit(conn)
        return count

    return run_pipeline(
        page_batches(conn, st, batch_size, stale, with_hash=True, where_after=stale_after),
        embedder,
        write,
        progress=progress,
        label=label,
        stored=_staged_by_content(conn, st, signature),
    )


def _staged_by_content(conn: Connection, st: Statements, signature: ModelSignature) -> Lookup:
    """Vectors staged earlier (by this pass or another) for the batch's contents: a content
    repeated anywhere in the store is embedded once."""
    query = st.staged_by_content(signature)

    def lookup(batch: Batch) -> dict[str, Vector]:
        rows = conn.execute(query, {"hashes": BytesArray(batch.hashes)}).all()
        found = {bytes(digest): np.asarray(vector, dtype=np.float32) for digest, vector in rows if vector is not None}
        return {text: found[digest] for text, digest in zip(batch.texts, batch.hashes, strict=True) if digest in found}

    return lookup


def stage_ahead(
    conn: Connection, st: Statements, embedder: Embedder, batch_size: int, progress: Progress, label: str
) -> tuple[int, int]:
    """Stage everything, then the rows written meanwhile, until at most a batch is left for
    the change to embed under its lock. Returns (rows staged, rows already fresh)."""
    staged, already = stage_pass(conn, st, embedder, batch_size, progress, label)
    stale = sa.not_(st.fresh_staged(embedder.signature()))
    for _ in range(MAX_CATCH_UP_PASSES):
        behind = catalog.count(conn, st.count_rows(stale))
        commit(conn)
        if behind <= batch_size:
            break
        log.info("stage: %d rows were written while staging ran; staging them too", behind)
        more, _ = stage_pass(conn, st, embedder, batch_size, progress, label)
        staged += more
    return staged, already


def drop_staging(conn: Connection, target: Target = DEFAULT_TARGET) -> None:
    conn.execute(Statements(target).drop_staging())
