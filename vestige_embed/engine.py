"""The re-embed engine: move every stored vector to a new embedding model.

Operator's guide
================

`run_reembed(conn, embedder, plan)` runs eight steps:

1. no-op when the registry already holds the target `(name, dimension, hash)` and says
   `ready` (re-running anything is always safe);
2. mark the registry `reembedding`, drop the HNSW index (always on a dimension change:
   the old index rejects vectors of another size);
3. stream `(id, content)` in primary-key order through a server-side cursor;
4. embed batch k+1 while batch k is written with one binary `UPDATE ... FROM unnest`;
   rows whose embedding is NULL are embedded too;
5. on a dimension change, relax the typmod before the writes and tighten it after
   (the tightening checks every row), or use a new column (approach C);
6. rebuild the HNSW index, plain or `CONCURRENTLY`, with `maintenance_work_mem` sized
   for the graph;
7. update the registry: new model, state `ready`;
8. return a `ReembedReport`.

Failure semantics: you must re-run to completion before serving search
-----------------------------------------------------------------------

Atomic mode (`commit_batches=False`, what `alembic upgrade` uses): everything runs in the
caller's transaction. Any failure (error, kill, lost connection) rolls back: vectors,
column type, index and registry are exactly as before. With `concurrent_index=True` the
transaction is committed before `CREATE INDEX CONCURRENTLY` (it cannot run inside one);
from then on the batched-mode rules apply.

Writers wait for atomic mode's table lock. Batched mode cannot hold a lock across its
commits: stop the application's writes (the banner says so); a row written meanwhile by
the old model fails the tightening on a dimension change, but not on a same-size change.

Batched mode (`commit_batches=True`, what `vestige migrate reembed` uses): every batch is
committed and logged as `reembed: wrote batch N (M rows)`. The registry says
`reembedding` from before the first write until step 7. If the run dies in between, the
table mixes two embedding spaces: `vector_search` refuses (`SearchUnavailable`) and the
application must not serve search. Recovery: run the same command again. The registry
still names the old model, so the run redoes the whole pass (same content and model give
the same vector) and ends `ready`. A leftover INVALID index from an interrupted
`CREATE INDEX CONCURRENTLY` stops a concurrent run until you drop it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed import index, staging, typmod
from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.errors import ReembedError
from vestige_embed.pipeline import NoProgress, Progress, count_rows, run_pipeline, stream_batches
from vestige_embed.plan import DryRunSummary, ReembedPlan, ReembedReport
from vestige_embed.registry import read_registry, register_model, set_state
from vestige_embed.schema import (
    EMBEDDING,
    HNSW_INDEX,
    HNSW_MAX_DIMENSION,
    KNOWLEDGE_NODES,
    NEXT_EMBEDDING,
    ModelState,
    quoted,
)
from vestige_embed.signature import ModelSignature
from vestige_embed.swap import swap_reembed
from vestige_embed.vector_io import register_binary_arrays, write_unnest

log = logging.getLogger("vestige_embed.reembed")

AutocommitBlock = Callable[[], AbstractContextManager[object]]

#: The plan's dry-run estimate: local fastembed embeds ~50 rows/s; an HNSW build costs a
#: flat 30 s up to 100k rows and grows linearly beyond.
DRY_RUN_ROWS_PER_SEC = 50.0
DRY_RUN_INDEX_SECS = 30.0
DRY_RUN_INDEX_ROWS = 100_000


def run_reembed(
    conn: Connection,
    embedder: Embedder,
    plan: ReembedPlan | None = None,
    *,
    autocommit_block: AutocommitBlock | None = None,
    progress: Progress | None = None,
) -> ReembedReport:
    """Re-embed every row of `knowledge_nodes` with `embedder` (see the module docstring)."""
    return _Run(conn, embedder, plan or ReembedPlan(), autocommit_block, progress or NoProgress()).run()


def dry_run_reembed(conn: Connection, embedder: Embedder, plan: ReembedPlan | None = None) -> DryRunSummary:
    """What `run_reembed` would do: reads the registry and counts rows; embeds and writes nothing."""
    plan = plan or ReembedPlan()
    current = read_registry(conn)
    target = embedder.signature()
    noop = current.signature == target and current.state is ModelState.READY
    rows = 0 if noop else count_rows(conn)
    index_secs = 0.0 if noop else DRY_RUN_INDEX_SECS * max(1.0, rows / DRY_RUN_INDEX_ROWS)
    return DryRunSummary(
        rows_to_update=rows,
        embedder_batches=math.ceil(rows / plan.batch_size),
        estimated_walltime_secs=round(rows / DRY_RUN_ROWS_PER_SEC + index_secs, 3),
        current_signature=current.signature,
        target_signature=target,
        would_alter_typmod=current.signature.dimension != target.dimension,
    )


class _Run:
    """One execution of the eight steps; holds the timings and the connection's mode."""

    def __init__(
        self,
        conn: Connection,
        embedder: Embedder,
        plan: ReembedPlan,
        autocommit_block: AutocommitBlock | None,
        progress: Progress,
    ) -> None:
        self.conn = conn
        self.embedder = embedder
        self.plan = plan
        self.progress = progress
        if autocommit_block is None and plan.concurrent_index and not plan.commit_batches:
            raise ReembedError(
                "concurrent_index=True needs to commit before CREATE INDEX CONCURRENTLY, which atomic mode "
                "cannot do on its own: use commit_batches=True, or run it from an Alembic revision "
                "(op.reembed passes Alembic's autocommit_block)"
            )
        self.autocommit_block = autocommit_block or self._own_autocommit_block

    def run(self) -> ReembedReport:
        conn, plan = self.conn, self.plan
        target = self.embedder.signature()
        current = read_registry(conn)
        # Step 1: no-op first.
        if current.signature == target and current.state is ModelState.READY:
            log.info("reembed: registry already holds %s and is ready; nothing to do", target.describe())
            return ReembedReport(rows_updated=0, duration_secs=0.0, index_rebuild_secs=0.0)
        if target.dimension > HNSW_MAX_DIMENSION:
            raise ReembedError(
                f"{target.name} produces {target.dimension}-d vectors; pgvector's HNSW index on `vector` "
                f"takes at most {HNSW_MAX_DIMENSION}. Choose a model of at most {HNSW_MAX_DIMENSION} dimensions."
            )
        started = time.perf_counter()
        if plan.concurrent_index and index.index_validity(conn, HNSW_INDEX) is False:
            raise ReembedError(
                f"index {HNSW_INDEX} is INVALID (left by an interrupted CREATE INDEX CONCURRENTLY). "
                f"Drop it, then re-run: DROP INDEX CONCURRENTLY {quoted(HNSW_INDEX)};"
            )
        log.info(
            "reembed: %s -> %s (%s)",
            current.signature.describe(),
            target.describe(),
            "batched commits" if plan.commit_batches else "atomic",
        )
        if plan.concurrent_index and plan.use_staged and staging.staging_exists(conn):
            return swap_reembed(
                conn, self.embedder, plan, target, autocommit_block=self.autocommit_block, progress=self.progress
            )
        self._session_settings()
        if not plan.commit_batches:
            # Writers wait (readers do not) until the transaction ends, so no row can slip
            # in with a vector of the old model after the cursor's snapshot.
            conn.execute(sa.text(f"LOCK TABLE {quoted(KNOWLEDGE_NODES)} IN SHARE ROW EXCLUSIVE MODE"))
        window = time.perf_counter()
        set_state(conn, ModelState.REEMBEDDING)
        self._checkpoint()

        # Step 2: drop the index.
        declared = typmod.column_dimension(conn)
        dimension_change = declared != target.dimension or current.signature.dimension != target.dimension
        if index.index_validity(conn, HNSW_INDEX) is not None and (plan.drop_hnsw_first or dimension_change):
            if not plan.drop_hnsw_first:
                log.warning(
                    "reembed: dropping %s although drop_hnsw_first=False: the dimension changes to %d "
                    "and the old index rejects vectors of the new size",
                    HNSW_INDEX,
                    target.dimension,
                )
            index.drop_index(conn)
            log.info("reembed: dropped index %s", HNSW_INDEX)

        # Step 5 (first half): make room for vectors of the new size.
        column = self._prepare_column(declared, target.dimension)
        self._checkpoint()

        # Steps 3-4: the data pass.
        data_pass = time.perf_counter()
        rows, from_staging = self._data_pass(target, column)
        data_pass_secs = time.perf_counter() - data_pass

        # Step 5 (second half): the integrity gate.
        if column == NEXT_EMBEDDING:
            typmod.swap_new_column(conn)
        elif declared != target.dimension:
            typmod.tighten(conn, target.dimension)
        self._checkpoint()

        # Step 6: rebuild the index.
        index_secs = self._rebuild_index(rows, target.dimension)
        conn.execute(sa.text(f"ANALYZE {quoted(KNOWLEDGE_NODES)}"))

        # Step 7: the registry names the new model; search may be served again.
        if self.plan.use_staged:
            staging.release_staging(conn, target)
        conn.execute(register_model(target))
        window_secs = time.perf_counter() - window
        self._checkpoint()
        total = time.perf_counter() - started
        report = ReembedReport(
            rows_updated=rows,
            duration_secs=round(total - index_secs, 6),
            index_rebuild_secs=round(index_secs, 6),
            rows_from_staging=from_staging,
            window_secs=round(window_secs, 6),
            data_pass_secs=round(data_pass_secs, 6),
        )
        log.info("reembed: done: %s", report.summary_line())
        return report

    def _prepare_column(self, declared: int | None, dimension: int) -> str:
        if declared == dimension:
            return EMBEDDING
        if self.plan.typmod_approach is typmod.TypmodApproach.AUTO and typmod.try_relax(self.conn):
            log.info("reembed: relaxed %s to vector (no typmod) for %d-d vectors", EMBEDDING, dimension)
            return EMBEDDING
        typmod.prepare_new_column(self.conn, dimension)
        log.info("reembed: approach C: writing into new column %s vector(%d)", NEXT_EMBEDDING, dimension)
        return NEXT_EMBEDDING

    def _data_pass(self, target: ModelSignature, column: str) -> tuple[int, int]:
        conn, plan = self.conn, self.plan
        register_binary_arrays(conn)
        from_staging = 0
        remaining: sa.ColumnElement[bool] | None = None
        if plan.use_staged and staging.staging_exists(conn):
            from_staging = staging.apply_staged(conn, target, column)
            remaining = ~staging.fresh_staged(target)
            log.info("reembed: applied %d staged vectors", from_staging)
            self._checkpoint()
        total = count_rows(conn) - from_staging
        self.progress.start(total)

        def write(ids: list[uuid.UUID], vectors: Matrix) -> int:
            return write_unnest(conn, column, ids, vectors)

        try:
            with self._reader() as reader:
                embedded = run_pipeline(
                    stream_batches(reader, plan.batch_size, remaining),
                    self.embedder,
                    write,
                    progress=self.progress,
                    on_batch=self._checkpoint,
                )
        finally:
            self.progress.finish()
        return embedded + from_staging, from_staging

    @contextlib.contextmanager
    def _reader(self) -> Iterator[Connection]:
        """Atomic mode reads in the caller's transaction; batched mode commits per batch,
        which would end the cursor's transaction, so it reads on a second connection."""
        if not self.plan.commit_batches:
            yield self.conn
            return
        with self.conn.engine.connect() as reader:
            reader.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            yield reader

    def _rebuild_index(self, rows: int, dimension: int) -> float:
        if index.index_validity(self.conn, HNSW_INDEX) is not None:
            return 0.0
        settings = self.plan.index_build_settings(rows, dimension)
        log.info("reembed: building %s (%s)", HNSW_INDEX, ", ".join(f"{k}={v}" for k, v in settings.items()))
        if self.plan.concurrent_index:
            with self.autocommit_block():
                seconds = index.build_index(self.conn, settings, concurrently=True)
        else:
            seconds = index.build_index(self.conn, settings)
        log.info("reembed: built %s in %.1f s", HNSW_INDEX, seconds)
        return seconds

    def _session_settings(self) -> None:
        """Transaction-local settings; re-applied after every commit in batched mode."""
        self.conn.execute(sa.text("SELECT set_config('lock_timeout', :v, true)"), {"v": self.plan.lock_timeout})

    def _checkpoint(self) -> None:
        if self.plan.commit_batches:
            self.conn.commit()
            self._session_settings()

    @contextlib.contextmanager
    def _own_autocommit_block(self) -> Iterator[None]:
        """Batched mode's stand-in for Alembic's autocommit_block()."""
        self.conn.commit()
        level = self.conn.get_isolation_level()
        self.conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield
        finally:
            self.conn.commit()  # ends SQLAlchemy's autobegun (no-op) transaction
            self.conn.execution_options(isolation_level=level)
