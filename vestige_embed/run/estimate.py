"""The dry run's estimate, measured on this machine and this store, never assumed.

Measurements, none of which leaves anything in the store: the target model embeds a
sample of the store's own rows (the embedding rate); the server counts the distinct
contents (what a run embeds, each once); and it builds the target's HNSW index over a
scratch table with the real build's settings, scaled to the store's size as HNSW builds
grow (n log n). The scratch vectors are the store's rows embedded with the target model
when the model is fast enough to embed them in a second; a slower model's run is its
embedding, so random vectors (harder to index than real ones) do there. A staged swap
also writes every row once more while the old index serves, which inserts each into that
index: timed by a serial build over the store's current vectors. Writes are taken at a
rate measured by `scripts/bench_engine.py`: they matter only for the cheapest embedders.
"""

from __future__ import annotations

import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder
from vestige_embed.run.build_settings import index_build_settings
from vestige_embed.run.plan import Estimate, ReembedPlan
from vestige_embed.store import catalog
from vestige_embed.store.vector_io import VectorArray, register_binary_arrays
from vestige_embed.target import Statements
from vestige_embed.target.statements import Calibration, set_setting

#: Rows of the store embedded to time the model (a caller batch's worth at most).
SAMPLE_ROWS = 64
#: Vectors the scratch index is built over.
CALIBRATION_ROWS = 2_000
#: The longest the dry run embeds the store's rows for its scratch index.
CALIBRATION_EMBED_SECS = 1.0
#: Rows/s the data pass writes (binary UNNEST, `scripts/bench_engine.py`, 2 cores: 35-60k).
WRITE_ROWS_PER_SEC = 35_000.0
#: Rows/s a staged swap copies staged vectors into the new column before the window.
COPY_ROWS_PER_SEC = 50_000.0


def estimate(conn: Connection, st: Statements, embedder: Embedder, plan: ReembedPlan) -> Estimate:
    """Measure, then add up each path. Leaves nothing behind in the store."""
    rows, distinct = (int(n) for n in conn.execute(st.count_rows_and_contents()).one())
    calibration_rows = min(CALIBRATION_ROWS, max(rows, 2))
    texts = _sample(conn, st, rows, calibration_rows)  # one scan: the timed sample is its start
    sample_secs, sampled = _time_sample(embedder, texts[:SAMPLE_ROWS])
    rate = sampled / sample_secs if sample_secs > 0 else math.inf
    source, new_index = _time_new_index(conn, st, embedder, plan, rows, texts, calibration_rows, rate)
    old_index = _time_old_index(conn, st, calibration_rows) if catalog.index_validity(conn, st) else 0.0
    data_pass = max(distinct / rate, rows / WRITE_ROWS_PER_SEC)
    index = _scaled(new_index, calibration_rows, rows)
    old_index_inserts = _scaled(old_index, calibration_rows, rows)
    catch_up = min(plan.batch_size, rows) / rate  # rows written while the change ran, at most a batch
    return Estimate(
        rows=rows,
        distinct_contents=distinct,
        write_rows_per_sec=WRITE_ROWS_PER_SEC,
        sampled_rows=sampled,
        sample_embed_secs=round(sample_secs, 3),
        embed_rows_per_sec=round(rate, 1),
        calibration_rows=calibration_rows,
        calibration_vectors=source.value,
        calibration_index_secs=round(new_index, 3),
        data_pass_secs=round(data_pass, 2),
        index_secs=round(index, 2),
        old_index_insert_secs=round(old_index_inserts, 2),
        in_place_secs=round(data_pass + index, 2),
        staged_secs=round(data_pass + rows / COPY_ROWS_PER_SEC + old_index_inserts + index + catch_up, 2),
        staged_window_secs=round(catch_up, 2),
    )


def _time_sample(embedder: Embedder, texts: list[str]) -> tuple[float, int]:
    if not texts:
        return 0.0, 0
    embedder.embed_batch(texts[:1])  # loads the model: not part of the rate
    started = time.perf_counter()
    embedder.embed_batch(texts)
    return time.perf_counter() - started, len(texts)


def _sample(conn: Connection, st: Statements, rows: int, size: int) -> list[str]:
    percent = min(100.0, 100.0 * 2 * size / max(rows, 1))
    return [str(t) for t in conn.execute(st.sample_contents(), {"percent": percent, "size": size}).scalars()]


def _time_new_index(
    conn: Connection,
    st: Statements,
    embedder: Embedder,
    plan: ReembedPlan,
    rows: int,
    texts: list[str],
    calibration_rows: int,
    rate: float,
) -> tuple[Calibration, float]:
    """The build of the new index, with the real build's memory and workers."""
    settings = index_build_settings(plan, st, rows, embedder.dimension)
    if rate * CALIBRATION_EMBED_SECS >= calibration_rows and len(texts) >= calibration_rows // 2:
        register_binary_arrays(conn)
        vectors = VectorArray(embedder.embed_batch(texts), st.target.storage)
        build = st.calibration_build(embedder.dimension, Calibration.GIVEN)
        return Calibration.GIVEN, _time_build(conn, settings, build, {"vectors": vectors})
    build = st.calibration_build(embedder.dimension, Calibration.RANDOM)
    return Calibration.RANDOM, _time_build(conn, settings, build, {"rows": calibration_rows})


def _time_old_index(conn: Connection, st: Statements, calibration_rows: int) -> float:
    """A serial build over the store's vectors: what inserting rows into its index costs."""
    dimension = catalog.column_dimension(conn, st)
    if dimension is None:
        return 0.0
    settings = [set_setting("max_parallel_maintenance_workers", "0")]
    build = st.calibration_build(dimension, Calibration.STORED)
    return _time_build(conn, settings, build, {"rows": calibration_rows})


def _time_build(
    conn: Connection, settings: list[sa.Select[Any]], build: list[sa.Executable], params: dict[str, object]
) -> float:
    """Seconds of the scratch index's build, in a savepoint rolled back (table and settings)."""
    create, fill, index = build
    savepoint = conn.begin_nested()
    try:
        for setting in settings:
            conn.execute(setting)
        # The real table is big enough for workers; the scratch one must get them too.
        conn.execute(set_setting("min_parallel_table_scan_size", "0"))
        conn.execute(create)
        conn.execute(fill, params)
        started = time.perf_counter()
        conn.execute(index)
        return time.perf_counter() - started
    finally:
        savepoint.rollback()


def _scaled(seconds: float, measured_rows: int, rows: int) -> float:
    """HNSW inserts cost about log n each: a build of n rows takes ~ n log n."""
    if rows <= 1:
        return 0.0
    return seconds * (rows * math.log(rows)) / (measured_rows * math.log(measured_rows))
