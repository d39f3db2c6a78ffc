"""The steps of a run, each small and named for what it does; the engine orders them."""

from __future__ import annotations

import contextlib
import logging
import time

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from vestige_embed.errors import ReembedError
from vestige_embed.run.build_settings import index_build_settings
from vestige_embed.run.context import Run
from vestige_embed.run.pipeline import run_locked_pass
from vestige_embed.run.plan import Strategy, TypmodApproach
from vestige_embed.run.progress import NoProgress
from vestige_embed.run.staging import stage_ahead
from vestige_embed.store import catalog
from vestige_embed.target.statements import compiled, set_setting

log = logging.getLogger("vestige_embed.reembed")

#: SQLSTATE classes of pgvector refusing to drop a typmod (approach C takes over then):
#: 42 (e.g. cannot coerce, datatype mismatch) and 0A (feature not supported). A lock
#: timeout, a cancel or a lost connection is not a refusal and is raised.
_RELAX_REFUSALS = ("42", "0A")
#: `could not resize shared memory segment`: a parallel build on a small /dev/shm (disk
#: full, or out of memory, as the platform reports it).
_SHARED_MEMORY_SHORT = ("53100", "53200")
#: The staged swap copies staged vectors this many batches of rows at a time.
COPY_PAGE_BATCHES = 2


def lock_out_writers(run: Run) -> None:
    """Writers wait (readers do not) until the transaction ends; a second run waits too.
    Writers queue behind the request while it waits, so their wait is counted from it."""
    run.clock.writes_blocked()
    run.conn.execute(run.st.lock())


def open_window(run: Run) -> None:
    """From here search waits (the DDL below locks the table against readers) until the
    registry names the new model at commit. Nothing is visible before: the registry row is
    locked only at the end, after the table, in the order writers take them too."""
    run.clock.open_window()


def stage_first(run: Run) -> None:
    """Runs that commit along the way stage every row first, in short transactions while
    search is served, so their locked transaction only applies and catches up."""
    with run.clock.step("data_pass"):
        stage_ahead(run.conn, run.st, run.embedder, run.plan.batch_size, run.progress, "reembed")


def unstaged_rows(run: Run) -> tuple[int, int]:
    """(rows without a fresh staged vector for the run's model, rows), in one scan."""
    if not catalog.staging_exists(run.conn, run.st):
        rows = catalog.count(run.conn, run.st.count_rows())
        return rows, rows
    stale = sa.not_(run.st.fresh_staged(run.signature))
    rows, unstaged = run.conn.execute(run.st.count_rows_and_matching(stale)).one()
    return int(unstaged), int(rows)


def choose_strategy(run: Run) -> Strategy:
    """Chosen once, from the plan and the catalog (the staged swap is chosen before this)."""
    found = catalog.column_type(run.conn, run.st)
    assert found is not None  # resolve_target checked the column
    type_name, declared = found
    if type_name == run.target.storage.value and declared == run.signature.dimension:
        return Strategy.IN_PLACE
    if run.plan.typmod_approach is TypmodApproach.NEW_COLUMN or type_name != run.target.storage.value:
        return Strategy.NEW_COLUMN
    return Strategy.IN_PLACE


def drop_index(run: Run, strategy: Strategy) -> None:
    """The old index would index every write (and rejects vectors of another size)."""
    if catalog.index_validity(run.conn, run.st) is None:
        return
    dimension_change = catalog.column_dimension(run.conn, run.st) != run.signature.dimension
    if not (run.plan.drop_hnsw_first or dimension_change or strategy is Strategy.NEW_COLUMN):
        return
    if not run.plan.drop_hnsw_first:
        log.warning(
            "reembed: dropping %s although drop_hnsw_first=False: the dimension changes to %d "
            "and the old index rejects vectors of the new size",
            run.target.index,
            run.signature.dimension,
        )
    run.conn.execute(run.st.drop_index())
    log.info("reembed: dropped index %s", run.target.index)


def prepare_column(run: Run, strategy: Strategy) -> Strategy:
    """Make room for vectors of the new size; returns the strategy that took (approach B
    falls back to C when pgvector refuses to relax the typmod).

    A same-size change relaxes too when the index was dropped: the tightening then rewrites
    the table, so the index is built over the live rows only. Built in the transaction
    that rewrote every row, it would also index the old versions (PostgreSQL indexes rows
    the building transaction deleted): twice the build, and the old model's vectors in the
    graph until VACUUM. A kept index takes the new vectors as they are written instead."""
    same_size = catalog.column_dimension(run.conn, run.st) == run.signature.dimension
    if strategy is Strategy.IN_PLACE and same_size and catalog.index_validity(run.conn, run.st) is not None:
        return strategy
    if strategy is Strategy.IN_PLACE and _try_relax(run):
        log.info("reembed: relaxed %s to %s (no typmod)", run.target.embedding, run.target.storage.value)
        return strategy
    run.conn.execute(run.st.drop_column(run.target.next_embedding))
    run.conn.execute(run.st.add_next_column(run.signature.dimension))
    log.info(
        "reembed: approach C: writing into new column %s %s(%d)",
        run.target.next_embedding,
        run.target.storage.value,
        run.signature.dimension,
    )
    return Strategy.NEW_COLUMN


def _try_relax(run: Run) -> bool:
    savepoint = run.conn.begin_nested()
    try:
        run.conn.execute(run.st.relax())
    except DBAPIError as e:
        savepoint.rollback()
        if not str(getattr(e.orig, "sqlstate", "") or "").startswith(_RELAX_REFUSALS):
            raise
        log.warning("reembed: pgvector refused to relax the typmod (%s); falling back to approach C", e.orig)
        return False
    if catalog.column_dimension(run.conn, run.st) is not None:
        savepoint.rollback()
        log.warning("reembed: the typmod is still set after relaxing it; falling back to approach C")
        return False
    savepoint.commit()
    return True


def column_for(run: Run, strategy: Strategy) -> str:
    return run.target.embedding if strategy is Strategy.IN_PLACE else run.target.next_embedding


def rows_to_embed(run: Run) -> int:
    """The rows the locked pass will embed, counted before the lock (or taken from the
    count the prebuild decision made): the progress total, without a scan of the table
    inside the window. Rows written until the lock is granted are embedded too, so the
    display treats it as an estimate."""
    if run.expected_rows is not None:
        return run.expected_rows
    if run.plan.use_staged:
        return unstaged_rows(run)[0]
    return catalog.count(run.conn, run.st.count_rows())


def data_pass(run: Run, column: str, expected: int) -> tuple[int, int]:
    """Apply fresh staged vectors, then embed the rest, all under the run's lock (the rest
    is what was written since staging: the catch-up). `expected`: `rows_to_embed`, for the
    progress display. Returns (rows written, from staging)."""
    with run.clock.step("data_pass"):
        from_staging = 0
        remaining: sa.ColumnElement[bool] | None = None
        if run.plan.use_staged and catalog.staging_exists(run.conn, run.st):
            from_staging = int(run.conn.execute(run.st.apply_staged(run.signature, column)).rowcount)
            remaining = sa.not_(run.st.holds_fresh_staged(run.signature, column))
            log.info("reembed: applied %d staged vectors", from_staging)
        embedded = _embed_rows(run, column, remaining, expected)
    return embedded + from_staging, from_staging


def _embed_rows(run: Run, column: str, where: sa.ColumnElement[bool] | None, expected: int | None) -> int:
    """`expected` None: no progress display (the swap's locked catch-up, a few rows)."""
    progress = run.progress if expected is not None else NoProgress()
    if expected is not None:
        progress.start(expected)
    try:
        return run_locked_pass(run.conn, run.st, column, run.embedder, run.plan.batch_size, where, progress=progress)
    finally:
        progress.finish()


def finish_column(run: Run, strategy: Strategy) -> None:
    """The integrity gate: the typmod goes back on (a rewrite that checks every row), or
    the new column takes the old one's place."""
    if strategy is Strategy.NEW_COLUMN:
        for statement in run.st.swap_next_column():
            run.conn.execute(statement)
    elif catalog.column_dimension(run.conn, run.st) != run.signature.dimension:
        log.info(
            "reembed: tightening %s to %d dimensions (checks every row)", run.target.embedding, run.signature.dimension
        )
        run.conn.execute(run.st.tighten(run.signature.dimension))


def build_index(run: Run, rows: int, *, column: str | None = None, name: str | None = None) -> None:
    """Build the HNSW index with memory sized for its graph; CONCURRENTLY when the plan
    says so (then outside any transaction, with session settings restored afterwards).
    A parallel build that runs out of shared memory is built again without workers."""
    name = name or run.target.index
    if catalog.index_validity(run.conn, run.st, name) is not None:
        return
    concurrently = run.plan.concurrent_index
    with run.clock.step("index"):
        if concurrently:
            with run.autocommit_block(), run.session_settings(run.transaction_settings()):
                _build(run, rows, column, name, concurrently=True)
        else:
            _build(run, rows, column, name, concurrently=False)
    log.info("reembed: built %s in %.1f s", name, run.clock.spent["index"])


def _build(run: Run, rows: int, column: str | None, name: str, *, concurrently: bool) -> None:
    settings = index_build_settings(run.plan, run.st, rows, run.signature.dimension, local=not concurrently)
    names = ("maintenance_work_mem", "max_parallel_maintenance_workers")
    with run.restoring(names) if concurrently else contextlib.nullcontext():
        shown = [run.conn.execute(s).scalar() for s in settings]
        how = "CONCURRENTLY " if concurrently else ""
        log.info("reembed: building %s %s(maintenance_work_mem=%s, workers=%s)", name, how, *shown)
        try:
            _create_index(run, column, name, concurrently=concurrently)
        except DBAPIError as e:
            short = getattr(e.orig, "sqlstate", None) in _SHARED_MEMORY_SHORT and "shared memory" in str(e.orig)
            if not short or shown[1] == "0":
                raise
            log.warning(
                "reembed: the parallel build of %s ran out of shared memory (%s); building it again without "
                "parallel workers (give the server a larger /dev/shm to keep them)",
                name,
                str(e.orig).strip().splitlines()[0],
            )
            if concurrently:
                run.conn.execute(run.st.drop_index(name, concurrently=True))
            run.conn.execute(set_setting(names[1], "0", local=not concurrently))
            _create_index(run, column, name, concurrently=concurrently)


def _create_index(run: Run, column: str | None, name: str, *, concurrently: bool) -> None:
    if concurrently:
        run.conn.execute(run.st.create_index(column, name=name, concurrently=True))
        return
    savepoint = run.conn.begin_nested()
    try:
        run.conn.execute(run.st.create_index(column, name=name))
    except BaseException:
        savepoint.rollback()
        raise
    savepoint.commit()


def register(run: Run) -> None:
    """Step 7: the registry names the new model; search may resume."""
    run.conn.execute(run.st.register_model(run.signature))
    run.clock.close_window()


def release_staged(run: Run) -> None:
    """The new model's staged vectors are spent (after the window: deleting them takes time)."""
    if catalog.staging_exists(run.conn, run.st):
        run.conn.execute(run.st.release_staged(run.signature))


def analyze(run: Run) -> None:
    run.conn.execute(run.st.analyze())


# The staged swap: new column and its index built while search is served, then a
# catalog-only swap in a window of milliseconds.


def prebuild_next_column(run: Run) -> int:
    """Before the window, in autocommit: fill the new column from staging. A rerun keeps
    what an interrupted one copied (and built)."""
    st, target = run.st, run.target
    with run.autocommit_block(), run.session_settings(run.transaction_settings()):
        if catalog.column_dimension(run.conn, st, target.next_embedding) != run.signature.dimension:
            run.conn.execute(st.drop_column(target.next_embedding))
        if not catalog.column_exists(run.conn, st, target.next_embedding):
            run.conn.execute(st.add_next_column(run.signature.dimension))
        with run.clock.step("data_pass"):
            copied = _copy_staged_in_pages(run)
        log.info("reembed: copied %d staged vectors into %s (search still served)", copied, target.next_embedding)
        if catalog.index_validity(run.conn, st, target.next_index) is False:
            run.conn.execute(st.drop_index(target.next_index, concurrently=True))
    return copied


def _copy_staged_in_pages(run: Run) -> int:
    """Key range by key range (autocommit: each its own transaction)."""
    st, column = run.st, run.target.next_embedding
    copied, skip = 0, run.plan.batch_size * COPY_PAGE_BATCHES - 1
    bounds: dict[str, object] = {}  # `after` once past the first page, `upto` unless the last
    while True:
        first = "after" not in bounds
        upto = run.conn.execute(st.key_page_end(first=first), {"skip": skip, **bounds}).scalar()
        if upto is not None:
            bounds["upto"] = upto
        page = st.copy_staged_page(run.signature, column, first=first, last=upto is None)
        copied += int(run.conn.execute(page, bounds).rowcount)
        if upto is None:
            return copied
        bounds = {"after": upto}


def catch_up_before_lock(run: Run) -> None:
    """What was written while the index was built, before the lock: staged (rows the
    writers did not stage themselves), then copied with what the writers staged, in one
    pass. The locked catch-up is then only the last moments' writes."""
    with run.autocommit_block(), run.session_settings(run.transaction_settings()):
        stage_ahead(run.conn, run.st, run.embedder, run.plan.batch_size, run.progress, "reembed")
        with run.clock.step("data_pass"):
            _copy_staged_in_pages(run)


def catch_up(run: Run) -> int:
    """Under the table lock: embed rows added or edited since staging into the new column."""
    st, target = run.st, run.target
    behind = sa.or_(st.column(target.next_embedding).is_(None), sa.not_(st.fresh_staged(run.signature)))
    started = time.perf_counter()
    with run.clock.step("data_pass"):
        # Vectors staged since the copy (by writers that follow the write contract) first.
        run.conn.execute(st.copy_staged_changed(run.signature, target.next_embedding))
        embedded = _embed_rows(run, target.next_embedding, behind, None)
    log.info(
        "reembed: embedded %d rows added or edited since staging (writes waited %.1f s)",
        embedded,
        time.perf_counter() - started,
    )
    return embedded


def swap_window(run: Run) -> None:
    """The window: catalog-only statements, then the registry, in one transaction."""
    run.clock.open_window()
    for statement in run.st.swap_next_column():
        run.conn.execute(statement)
    run.conn.execute(run.st.rename_next_index())
    register(run)


def refuse_invalid_index(run: Run) -> None:
    if run.plan.concurrent_index and catalog.index_validity(run.conn, run.st) is False:
        raise ReembedError(
            f"index {run.target.index} is INVALID (left by an interrupted CREATE INDEX CONCURRENTLY). "
            f"Drop it, then re-run: {compiled(run.st.drop_index(concurrently=True))};"
        )
