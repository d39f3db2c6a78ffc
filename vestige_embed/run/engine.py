"""The re-embed engine: move every stored vector of a target to a new embedding model.

Operator's guide
================

`run_reembed(conn, embedder, plan, target=...)` runs eight steps:

1. no-op when the registry already holds the target `(name, dimension, hash)` and says
   `ready` (re-running anything is always safe);
2. drop the HNSW index (always on a dimension change: the old index rejects vectors of
   another size); the registry keeps saying `ready` for the old model, since nothing of
   the change is visible before the transaction that makes all of it visible;
3. read `(key, content)` in content order through a server-side cursor (repeats together);
4. embed each batch and queue its binary `UPDATE ... FROM unnest` (libpq pipeline mode:
   the server writes while the next batch is embedded); rows whose embedding is NULL are
   embedded too, and a write a trigger skipped fails the run;
5. on a dimension change, relax the typmod before the writes and tighten it after
   (the tightening checks every row), or use a new column (approach C); a same-size
   change whose index was dropped does the same, so the tightening's rewrite leaves
   only live rows for the index build;
6. rebuild the HNSW index, plain or `CONCURRENTLY`, with `maintenance_work_mem` sized
   for the graph;
7. update the registry: new model, state `ready`;
8. return a `ReembedReport`.

Each distinct content is embedded once per run: the in-transaction pass reads in content
order, staging looks up vectors it already holds for the same content.

The strategy (in place, new column, staged swap) is chosen once per run. The staged
swap (the new column and its index built before the window, which is then catalog-only)
is taken when the plan asks for a concurrent index, and by default whenever staging
covers the store: batched runs (they stage everything first), and atomic runs with an
autocommit block (Alembic's) on a store `vestige migrate stage` has covered. Otherwise
the run logs what its window holds and why; `prebuild_index=False` (or
`VESTIGE_EMBED_PREBUILD_INDEX=0`) keeps the index build inside the window.

Never mixed
-----------

Every run makes its change visible in one transaction, under a table lock taken first
(SHARE ROW EXCLUSIVE: writers and a second run wait, readers do not), and locks the
registry row only at the end: the order the application's write helper
(`store.writer_contract.model_for_write`) takes them in, so writers never deadlock with a
run. An advisory lock keyed by the target refuses a second run at once.

Atomic mode (`commit_batches=False`, what `alembic upgrade` uses): everything runs in the
caller's transaction. Any failure (error, kill, lost connection) rolls back: vectors,
column type, index and registry are exactly as before.

Batched mode (`commit_batches=True`, what `vestige migrate reembed` uses): the new vectors
are first staged, key-paged, one short transaction per batch (logged as
`reembed: wrote batch N (M rows)`), while search is served from the old vectors; rows
written meanwhile are staged again in up to three more passes. Then (by default) the
staged swap below; with `prebuild_index=False`, one transaction takes the lock, applies
the staged vectors, embeds what was written since (the catch-up), and does steps 5-7.
A failure while staging leaves the store as it was; re-running embeds only what is not
staged yet.

`concurrent_index=True` stages the same way, then fills a new column and builds its
index CONCURRENTLY while search is served, and swaps in a catalog-only window. A
leftover INVALID index from an interrupted `CREATE INDEX CONCURRENTLY` stops such a run
until you drop it.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import replace

from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder
from vestige_embed.errors import ReembedError
from vestige_embed.run import steps
from vestige_embed.run.context import AutocommitBlock, Run, idle_while_embedding, own_autocommit_block
from vestige_embed.run.estimate import estimate
from vestige_embed.run.plan import DryRunSummary, ReembedPlan, ReembedReport, Strategy
from vestige_embed.run.progress import NoProgress, Progress
from vestige_embed.store import catalog
from vestige_embed.store.registry import RegistryRow, ensure_registry, read_registry
from vestige_embed.store.run_lock import run_lock
from vestige_embed.target import DEFAULT_TARGET, ModelSignature, ModelState, Statements, Target

log = logging.getLogger("vestige_embed.reembed")


def run_reembed(
    conn: Connection,
    embedder: Embedder,
    plan: ReembedPlan | None = None,
    *,
    target: Target = DEFAULT_TARGET,
    autocommit_block: AutocommitBlock | None = None,
    progress: Progress | None = None,
) -> ReembedReport:
    """Re-embed every row of `target` with `embedder` (see the module docstring)."""
    plan = plan or ReembedPlan()
    if autocommit_block is None and plan.concurrent_index and not plan.commit_batches:
        raise ReembedError(
            "concurrent_index=True needs to commit before CREATE INDEX CONCURRENTLY, which atomic mode "
            "cannot do on its own: use commit_batches=True, or run it from an Alembic revision "
            "(op.reembed passes Alembic's autocommit_block)"
        )
    target = catalog.resolve_target(conn, target)
    ensure_registry(conn)
    current = read_registry(conn, target)
    signature = embedder.signature()
    if already_in_place(conn, target, current, signature):
        log.info("reembed: registry already holds %s and is ready; nothing to do", signature.describe())
        return ReembedReport(rows_updated=0, duration_secs=0.0, index_rebuild_secs=0.0)
    if current.signature == signature and current.state is ModelState.READY:
        log.warning(
            "reembed: %s is not vector(%d) although the registry says %s: the column was changed outside "
            "vestige-embed; re-embedding every row",
            target.describe(),
            signature.dimension,
            signature.describe(),
        )
    catalog.require_alter_rights(conn, Statements(target))
    limit = target.storage.hnsw_max_dimension
    if signature.dimension > limit:
        raise ReembedError(
            f"{signature.name} produces {signature.dimension}-d vectors; pgvector's HNSW index on "
            f"`{target.storage.value}` takes at most {limit}. "
            + ("Store the target as halfvec (up to 4000), or choose " if limit < 4000 else "Choose ")
            + f"a model of at most {limit} dimensions."
        )
    block = autocommit_block or own_autocommit_block(conn)
    run = Run(conn, embedder, plan, target, current, progress or NoProgress(), block)
    if _prebuilds(run, can_commit=plan.commit_batches or autocommit_block is not None):
        plan = replace(plan, concurrent_index=True)
        run = replace(run, plan=plan)
    steps.refuse_invalid_index(run)
    log.info(
        "reembed: %s: %s -> %s (%s)",
        target.describe(),
        current.signature.describe(),
        signature.describe(),
        "staged in batches, then one transaction" if plan.commit_batches else "atomic",
    )
    ahead = plan.commit_batches or plan.concurrent_index
    description = f"vestige-embed: {target.describe()} -> {signature.name}"
    try:
        with idle_while_embedding(conn), run_lock(conn, target, description, transaction=not ahead):
            if ahead:
                with contextlib.nullcontext() if plan.commit_batches else run.autocommit_block():
                    steps.stage_first(run)
            report = _staged_swap(run) if plan.concurrent_index else _rewrite(run)
            if plan.commit_batches:
                conn.commit()
                run.clock.writes_released()
    except BaseException:
        if plan.commit_batches:
            conn.rollback()
        raise
    log.info("reembed: done (%s): %s", report.strategy, report.summary_line())
    log.info(
        "reembed: window %.2f s (search blocked), writers held %.2f s", report.window_secs, report.writes_blocked_secs
    )
    return report


def already_in_place(conn: Connection, target: Target, current: RegistryRow, signature: ModelSignature) -> bool:
    """The registry holds `signature`, ready, over a column of its size. A column of another
    size (changed outside vestige-embed: drift) holds vectors of some other model, so a run
    to the registry's own model re-embeds every row instead of answering `nothing to do`."""
    if not (current.signature == signature and current.state is ModelState.READY):
        return False
    column = catalog.column_dimension(conn, Statements(target))
    return column is None or column == signature.dimension


def _prebuilds(run: Run, *, can_commit: bool) -> bool:
    """Whether a plan without `concurrent_index` still takes the staged swap: when staging
    covers the store (batched runs stage everything first), unless the plan says not to.
    Otherwise says what the window will hold, and why."""
    plan = run.plan
    if plan.concurrent_index or not plan.use_staged:
        return False
    if not plan.prebuild_index:
        log.info("reembed: prebuild_index is off: the HNSW index is built inside the window, writers waiting")
        return False
    if plan.commit_batches:
        return True
    unstaged, rows = steps.unstaged_rows(run)
    run.expected_rows = unstaged  # nothing is staged before `_rewrite`: its progress total
    if unstaged <= plan.batch_size and can_commit and rows:
        log.info("reembed: staging covers %d of %d rows: index built before the window", rows - unstaged, rows)
        return True
    why = (
        f"{unstaged} of {rows} rows have no fresh staged vector"
        if unstaged > plan.batch_size
        else "this atomic run has no autocommit block for CREATE INDEX CONCURRENTLY"
    )
    log.info(
        "reembed: the window embeds %d rows and builds the HNSW index over %d while writers wait (%s); "
        "`--dry-run` estimates how long; `vestige migrate stage` beforehand, from an Alembic revision or "
        "with commit_batches, makes it seconds",
        unstaged,
        rows,
        why,
    )
    return False


def _rewrite(run: Run) -> ReembedReport:
    """In place or into a new column, in one transaction under the table lock: writers wait,
    and nothing is visible to anyone until the registry names the new model."""
    expected = steps.rows_to_embed(run)
    run.set_transaction_settings()
    steps.lock_out_writers(run)
    steps.open_window(run)
    strategy = steps.choose_strategy(run)
    steps.drop_index(run, strategy)
    strategy = steps.prepare_column(run, strategy)
    rows, from_staging = steps.data_pass(run, steps.column_for(run, strategy), expected)
    steps.finish_column(run, strategy)
    steps.build_index(run, rows)
    steps.analyze(run)
    steps.register(run)
    steps.release_staged(run)
    return run.clock.report(strategy, rows, from_staging)


def _staged_swap(run: Run) -> ReembedReport:
    """Search stays on the old column until a catalog-only window; writers wait only for
    the catch-up of rows changed since staging, and the window."""
    copied = steps.prebuild_next_column(run)
    rows = catalog.count(run.conn, run.st.count_rows())
    steps.build_index(run, rows, column=run.target.next_embedding, name=run.target.next_index)
    steps.catch_up_before_lock(run)
    run.set_transaction_settings()
    steps.lock_out_writers(run)
    embedded = steps.catch_up(run)
    steps.swap_window(run)
    if run.plan.commit_batches:
        run.conn.commit()  # writers go on; the clean-up and statistics can follow
        run.clock.writes_released()
    steps.release_staged(run)
    steps.analyze(run)
    # The swap moved every row to the new model, whichever run copied it (a rerun after an
    # interruption finds most rows copied already): the count the index build was sized by.
    return run.clock.report(Strategy.STAGED_SWAP, max(rows, copied + embedded), copied)


def dry_run_reembed(
    conn: Connection, embedder: Embedder, plan: ReembedPlan | None = None, *, target: Target = DEFAULT_TARGET
) -> DryRunSummary:
    """What `run_reembed` would do, and how long it would take: reads the registry, counts
    rows, and measures (`run.estimate`: the model on a sample of rows, an index build on a
    scratch table, dropped again). Writes nothing to the store."""
    plan = plan or ReembedPlan()
    current = read_registry(conn, target)
    signature = embedder.signature()
    noop = already_in_place(conn, target, current, signature)
    measured = None if noop else estimate(conn, Statements(target), embedder, plan)
    rows = 0 if measured is None else measured.rows
    staged = plan.commit_batches or plan.concurrent_index
    seconds = 0.0 if measured is None else measured.staged_secs if staged else measured.in_place_secs
    return DryRunSummary(
        rows_to_update=rows,
        embedder_batches=math.ceil(rows / plan.batch_size),
        estimated_walltime_secs=seconds,
        current_signature=current.signature,
        target_signature=signature,
        would_alter_typmod=catalog.column_dimension(conn, Statements(target)) != signature.dimension,
        estimate=measured,
    )
