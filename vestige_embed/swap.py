"""Stage, then swap with a prebuilt index: a maintenance window of seconds.

Used when fresh staged vectors exist and the plan asks for a concurrent index. Before
the window, while the old column and its index keep serving search:

1. add `embedding_next vector(N)` (catalog only) and copy the fresh staged vectors
   into it (committed);
2. `CREATE INDEX CONCURRENTLY` on it, sized like every other build.

Then, in one transaction:

3. `LOCK TABLE ... IN SHARE MODE` (writes wait, search still runs on the old column);
   embed the rows added or edited since staging into `embedding_next`;
4. the window: drop the old column (and with it the old index), rename the new column
   and its index, update the registry. Catalog-only statements: milliseconds.

A failure before step 4 leaves the store on the old model, `ready`; re-running picks
up the copied vectors and the built index where they are. The dropped column's space is
reclaimed by the next table rewrite (`VACUUM FULL`, or the next non-swap re-embed).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.engine import Connection

from vestige_embed import index, staging, typmod
from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.pipeline import Progress, count_rows, run_pipeline, stream_batches
from vestige_embed.plan import ReembedPlan, ReembedReport
from vestige_embed.registry import register_model
from vestige_embed.schema import HNSW_INDEX, KNOWLEDGE_NODES, NEXT_EMBEDDING, NEXT_HNSW_INDEX, quoted
from vestige_embed.schema import staging as staging_table
from vestige_embed.signature import ModelSignature
from vestige_embed.vector_io import register_binary_arrays, write_unnest

log = logging.getLogger("vestige_embed.reembed")


def swap_reembed(
    conn: Connection,
    embedder: Embedder,
    plan: ReembedPlan,
    target: ModelSignature,
    *,
    autocommit_block: Callable[[], AbstractContextManager[object]],
    progress: Progress,
) -> ReembedReport:
    started = time.perf_counter()
    next_column = sa.column(NEXT_EMBEDDING, type_=VECTOR())
    with autocommit_block():
        timeout = index.apply_settings(conn, {"lock_timeout": plan.lock_timeout}, local=False)
        if (
            typmod.column_exists(conn, NEXT_EMBEDDING)
            and typmod.column_dimension(conn, NEXT_EMBEDDING) != target.dimension
        ):
            conn.execute(sa.text(typmod.drop_column_sql(NEXT_EMBEDDING)))
        if not typmod.column_exists(conn, NEXT_EMBEDDING):
            conn.execute(sa.text(typmod.add_next_column_sql(target.dimension)))
        copied = int(
            conn.execute(
                staging.apply_staged_statement(target, NEXT_EMBEDDING).where(
                    next_column.is_distinct_from(staging_table.c.embedding)
                )
            ).rowcount
        )
        log.info("reembed: copied %d staged vectors into %s (search still served)", copied, NEXT_EMBEDDING)
        if index.index_validity(conn, NEXT_HNSW_INDEX) is False:
            index.drop_index(conn, NEXT_HNSW_INDEX, concurrently=True)
        index_secs = 0.0
        if index.index_validity(conn, NEXT_HNSW_INDEX) is None:
            settings = plan.index_build_settings(count_rows(conn), target.dimension)
            index_secs = index.build_index(conn, settings, NEXT_EMBEDDING, name=NEXT_HNSW_INDEX, concurrently=True)
            log.info("reembed: built %s in %.1f s (search still served)", NEXT_HNSW_INDEX, index_secs)
        index.apply_settings(conn, timeout, local=False)

    # The catch-up: writes wait, search goes on.
    conn.execute(sa.text("SELECT set_config('lock_timeout', :v, true)"), {"v": plan.lock_timeout})
    locked = time.perf_counter()
    conn.execute(sa.text(f"LOCK TABLE {quoted(KNOWLEDGE_NODES)} IN SHARE MODE"))
    register_binary_arrays(conn)
    behind = sa.or_(next_column.is_(None), ~staging.fresh_staged(target))
    progress.start(count_rows(conn, behind))

    def write(ids: list[uuid.UUID], vectors: Matrix) -> int:
        return write_unnest(conn, NEXT_EMBEDDING, ids, vectors)

    try:
        embedded = run_pipeline(stream_batches(conn, plan.batch_size, behind), embedder, write, progress=progress)
    finally:
        progress.finish()
    log.info(
        "reembed: embedded %d rows added or edited since staging (writes waited %.1f s)",
        embedded,
        time.perf_counter() - locked,
    )

    # The window: catalog-only statements.
    window = time.perf_counter()
    typmod.swap_new_column(conn)
    conn.execute(sa.text(f"ALTER INDEX {quoted(NEXT_HNSW_INDEX)} RENAME TO {quoted(HNSW_INDEX)}"))
    staging.release_staging(conn, target)
    conn.execute(register_model(target))
    window_secs = time.perf_counter() - window
    if plan.commit_batches:
        conn.commit()
    conn.execute(sa.text(f"ANALYZE {quoted(KNOWLEDGE_NODES)}"))
    if plan.commit_batches:
        conn.commit()
    rows_total = copied + embedded
    total = time.perf_counter() - started
    report = ReembedReport(
        rows_updated=rows_total,
        duration_secs=round(total - index_secs, 6),
        index_rebuild_secs=round(index_secs, 6),
        rows_from_staging=copied,
        window_secs=round(window_secs, 6),
    )
    log.info("reembed: done (swap, window %.3f s): %s", window_secs, report.summary_line())
    return report
