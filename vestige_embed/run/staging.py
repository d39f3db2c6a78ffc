"""Stage, then swap: precompute the target model's vectors while search is still served.

`stage()` fills the target's staging table with one vector per row for a model, plus
the hash of the content it embedded (computed by the server, the one definition the
freshness check also uses). A staged vector is *fresh* when its signature is the
model's and its content hash matches the row's current content; a run applies fresh
vectors with one set-based UPDATE and embeds only the rest. Staging commits every
batch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.run.pipeline import run_pipeline
from vestige_embed.run.progress import NoProgress, Progress
from vestige_embed.run.reader import Batch, stream_batches
from vestige_embed.store import catalog
from vestige_embed.store.writes import StagingWriter
from vestige_embed.target import DEFAULT_TARGET, Statements, Target

log = logging.getLogger("vestige_embed.stage")


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
    progress = progress or NoProgress()
    started = time.perf_counter()
    target = catalog.resolve_target(conn, target)
    st = Statements(target)
    signature = embedder.signature()
    conn.execute(st.create_staging())
    replaced = conn.execute(st.drop_staged_other_models(signature)).rowcount
    if replaced:
        log.info("stage: removed %d vectors staged for another model", replaced)
    conn.commit()
    stale = sa.not_(st.fresh_staged(signature))
    todo = catalog.count(conn, st.count_rows(stale))
    already = catalog.count(conn, st.count_rows()) - todo
    conn.commit()
    log.info(
        "stage: %d rows of %s to embed with %s, %d already staged",
        todo,
        target.describe(),
        signature.describe(),
        already,
    )
    progress.start(todo)
    writer = StagingWriter(conn, st, signature)

    def write(batch: Batch, vectors: Matrix) -> int:
        count = writer(batch.keys, batch.hashes, vectors)
        conn.commit()
        return count

    def batches() -> Iterator[Batch]:
        with conn.engine.connect() as reader:
            yield from stream_batches(reader, st, batch_size, stale, with_hash=True)

    try:
        staged = run_pipeline(batches(), embedder, write, progress=progress, label="stage")
    finally:
        progress.finish()
    return StageReport(staged, already, round(time.perf_counter() - started, 6))


def drop_staging(conn: Connection, target: Target = DEFAULT_TARGET) -> None:
    conn.execute(Statements(target).drop_staging())
