"""The dry run's estimate, measured on this machine and this store, never assumed.

Three measurements, none of which writes to the store: the target model embeds a sample
of the store's own rows (the embedding rate); the server counts the distinct contents
(what a run embeds, each once); and it builds the target's HNSW index over a scratch
table of random vectors (TEMPORARY, gone with the transaction), scaled to the store's
size as HNSW builds grow (n log n). Writes are taken at a rate measured by
`scripts/bench_engine.py`: they matter only for the cheapest embedders.
"""

from __future__ import annotations

import math
import time

from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Embedder
from vestige_embed.run.plan import Estimate
from vestige_embed.target import Statements

#: Rows of the store embedded to time the model (a caller batch's worth at most).
SAMPLE_ROWS = 64
#: Random vectors the scratch index is built over.
CALIBRATION_ROWS = 2_000
#: Rows/s the data pass writes (binary UNNEST, `scripts/bench_engine.py`, 2 cores: 35-60k).
WRITE_ROWS_PER_SEC = 35_000.0
#: Rows/s a staged swap copies staged vectors into the new column before the window.
COPY_ROWS_PER_SEC = 50_000.0


def estimate(conn: Connection, st: Statements, embedder: Embedder, batch_size: int) -> Estimate:
    """Measure, then add up each path. Leaves nothing behind in the store."""
    rows, distinct = (int(n) for n in conn.execute(st.count_rows_and_contents()).one())
    sample_secs, sampled = _time_sample(conn, st, embedder, rows)
    rate = sampled / sample_secs if sample_secs > 0 else math.inf
    calibration = _time_index_build(conn, st, embedder.dimension)
    data_pass = max(distinct / rate, rows / WRITE_ROWS_PER_SEC)
    index = _scaled(calibration, CALIBRATION_ROWS, rows)
    catch_up = min(batch_size, rows) / rate  # rows written while the change ran, at most a batch
    return Estimate(
        rows=rows,
        distinct_contents=distinct,
        write_rows_per_sec=WRITE_ROWS_PER_SEC,
        sampled_rows=sampled,
        sample_embed_secs=round(sample_secs, 3),
        embed_rows_per_sec=round(rate, 1),
        calibration_rows=CALIBRATION_ROWS,
        calibration_index_secs=round(calibration, 3),
        data_pass_secs=round(data_pass, 2),
        index_secs=round(index, 2),
        in_place_secs=round(data_pass + index, 2),
        staged_secs=round(data_pass + rows / COPY_ROWS_PER_SEC + index + catch_up, 2),
        staged_window_secs=round(catch_up, 2),
    )


def _time_sample(conn: Connection, st: Statements, embedder: Embedder, rows: int) -> tuple[float, int]:
    percent = min(100.0, 100.0 * 2 * SAMPLE_ROWS / max(rows, 1))
    texts = [str(t) for t in conn.execute(st.sample_contents(), {"percent": percent, "size": SAMPLE_ROWS}).scalars()]
    if not texts:
        return 0.0, 0
    embedder.embed_batch(texts[:1])  # loads the model: not part of the rate
    started = time.perf_counter()
    embedder.embed_batch(texts)
    return time.perf_counter() - started, len(texts)


def _time_index_build(conn: Connection, st: Statements, dimension: int) -> float:
    create, fill, index = st.calibration_build(dimension)
    with conn.begin_nested():
        conn.execute(create)
        conn.execute(fill, {"rows": CALIBRATION_ROWS})
        started = time.perf_counter()
        conn.execute(index)
        spent = time.perf_counter() - started
        conn.execute(st.drop_calibration())
    return spent


def _scaled(seconds: float, measured_rows: int, rows: int) -> float:
    """HNSW inserts cost about log n each: a build of n rows takes ~ n log n."""
    if rows <= 1:
        return 0.0
    return seconds * (rows * math.log(rows)) / (measured_rows * math.log(measured_rows))
