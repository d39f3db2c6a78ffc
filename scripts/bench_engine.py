"""The re-embed engine's speed and memory, each figure the median of several alternating rounds.

Prints, on one private embedded PostgreSQL:
- the hashing embedder: the engine's data pass against the two limits it cannot beat,
  measured in the same rounds: pure hashing (no database) and the raw binary write
  (precomputed 384-d vectors, binary UNNEST, no index, the faster of queued in pipeline
  mode, as the engine writes, and one statement at a time); also binary COPY + UPDATE
  and per-row text writes (the fallback), for comparison. Hashing and writing share
  the machine's cores, so both at once: the queued raw write hashing each batch's rows
  just before queueing it (every cost of the pass but reading the rows), and the pass's
  database work alone (its cursor's read, precomputed vectors queued);
- all-MiniLM-L6-v2 on real docstrings: the data pass against pure embedding of the same
  texts by the same embedder; then a store where 16% of the rows repeat another's content
  (embedded once, so the pass can outrun pure embedding of every row);
- the HNSW rebuild with the engine's settings against PostgreSQL's defaults;
- peak RSS of a process running the engine at two sizes (one run each: memory, not time).

Targets: data pass >= 95% of its limit (for hashing: the slower of pure hashing and the
raw write; printed against both at once too), as the ratio of the medians and as the
median of each round's own ratio (drift between rounds cancels). The hashing figures,
about a second each and the most variable, take three times the rounds. Each sample
starts from a fresh copy of the same database. Run: `make bench` (or `make bench-quick`), or
`.venv/bin/python scripts/bench_engine.py [--quick] [--repeats N] [--only SECTION]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _bench_common import machine_cpu_secs, peak_rss_mb
from _bench_db import STORE, copy_database, drop_database, fresh_database, memories, seed, seeded_database
from _bench_stats import DEFAULT_REPEATS, Figure, alternate, paired_ratio_line, ratio_line
from _bench_writes import write_copy, write_per_row

from vestige_embed import Embedder, HashEmbedder, ReembedPlan, resolve_embedder, run_reembed
from vestige_embed.demo.corpus import stdlib_docs
from vestige_embed.run.build_settings import index_build_settings
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.embedded import start_server
from vestige_embed.store import catalog
from vestige_embed.store.pipelined import PipelinedPass, QueuedWrites
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target.statements import current_setting

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BATCH = 128
TARGET = 0.95
#: Share of rows that repeat another row's content in the repeated-contents store.
REPEATED = 0.16
SAMPLE = "sample"
PURE = "pure hashing (no database)"
PURE_EMBEDDING = "pure embedding (no database)"
QUEUED = "raw binary write, queued (as the engine)"
ONE_AT_A_TIME = "raw binary write, one statement at a time"
DATA_PASS = "engine data pass"
DB_WORK = "its database work alone (no embedding)"
BOTH = "raw write queued, each batch hashed first"
SECTIONS = ("hashing", "minilm", "hnsw", "rss")
#: The hashing figures take about a second each and vary the most (two cores shared by
#: the client and the server): three times the rounds, for a steadier median.
HASHING_ROUNDS = 3

WriteFn = Callable[[sa.Connection, str, Sequence[Any], np.ndarray], int]  # type: ignore[type-arg]


def with_repeats(texts: list[str], share: float) -> list[str]:
    """`texts`, with the last `share` of them replaced by copies of earlier ones, shuffled."""
    distinct = texts[: round(len(texts) * (1 - share))]
    rng = random.Random(7)
    out = distinct + [rng.choice(distinct) for _ in range(len(texts) - len(distinct))]
    rng.shuffle(out)
    return out


def on_copy(server: Any, name: str, measure: Callable[[sa.Engine], float]) -> float:
    """`measure` on a fresh copy of database `name`, dropped afterwards."""
    engine = copy_database(server, name, SAMPLE)
    try:
        return measure(engine)
    finally:
        engine.dispose()
        drop_database(server, SAMPLE)


def pure_rate(embedder: Embedder, texts: list[str], cpu: Figure | None = None) -> float:
    embedder.embed_batch(texts[:8])  # loaded and warm, as the engine's embedder is after its first batch
    cpu_before, started = machine_cpu_secs(), time.perf_counter()
    for i in range(0, len(texts), BATCH):
        embedder.embed_batch(texts[i : i + BATCH])
    rate = len(texts) / (time.perf_counter() - started)
    if cpu is not None:
        cpu.values.append(machine_cpu_secs() - cpu_before)
    return rate


def write_unnest(conn: sa.Connection, column: str, ids: Sequence[Any], vectors: np.ndarray) -> int:  # type: ignore[type-arg]
    """The engine's write statement, waiting for each answer."""
    return VectorWriter(conn, STORE, column)(list(ids), vectors)


def write_rate(
    writer: WriteFn,
    limit: int | None = None,
    *,
    queued: bool = False,
    cpu: Figure | None = None,
    hasher: Embedder | None = None,
) -> Callable[[sa.Engine], float]:
    """`queued`: the engine's own write path, statements queued in pipeline mode. `hasher`:
    each batch's vectors are its rows' contents hashed just before it is queued (in this
    thread, as the pass embeds): both inherent costs on the same cores, without the read."""

    def measure(engine: sa.Engine) -> float:
        with engine.begin() as conn:
            found = conn.execute(sa.select(STORE.key, STORE.content)).all()[:limit]
            ids, texts = [r[0] for r in found], [r[1] for r in found]
            vectors = np.random.default_rng(1).standard_normal((len(ids), 384)).astype(np.float32)
            conn.execute(STORE.drop_index())
            conn.execute(STORE.relax())
            writer(conn, "embedding", ids[:1], vectors[:1])  # registers the binary dumpers, outside the timing
            cpu_before, started = machine_cpu_secs(), time.perf_counter()
            if queued:
                with QueuedWrites(conn, STORE, "embedding") as queue:
                    for i in range(0, len(ids), BATCH):
                        batch = hasher.embed_batch(texts[i : i + BATCH]) if hasher else vectors[i : i + BATCH]
                        queue(list(ids[i : i + BATCH]), batch)
            else:
                for i in range(0, len(ids), BATCH):
                    writer(conn, "embedding", ids[i : i + BATCH], vectors[i : i + BATCH])
            seconds = time.perf_counter() - started
            if cpu is not None:
                cpu.values.append(machine_cpu_secs() - cpu_before)
            return len(ids) / seconds

    return measure


def database_work(engine: sa.Engine) -> float:
    """The data pass without its embedder: rows read through the pass's cursor (by content),
    under the run's table lock, precomputed vectors queued as the pass queues them."""
    with engine.begin() as conn:
        count = conn.execute(STORE.count_rows()).scalar_one()
        vectors = np.random.default_rng(1).standard_normal((count, 384)).astype(np.float32)
        conn.execute(STORE.lock())
        conn.execute(STORE.drop_index())
        conn.execute(STORE.relax())
        by_address = catalog.rows_stay_put(conn, STORE)
        started, done = time.perf_counter(), 0
        with PipelinedPass(conn, STORE, "embedding", BATCH, by_address=by_address) as rows:
            for keys, _texts in rows.batches():
                rows(keys, vectors[done : done + len(keys)])
                done += len(keys)
        return done / (time.perf_counter() - started)


def engine_rate(embedder: Embedder) -> Callable[[sa.Engine], float]:
    def measure(engine: sa.Engine) -> float:
        with engine.connect() as conn:
            report = run_reembed(conn, embedder, ReembedPlan(batch_size=BATCH))
            conn.commit()
        return report.rows_updated / report.data_pass_secs

    return measure


def index_build(settings: list[Any]) -> Callable[[sa.Engine], float]:
    def measure(engine: sa.Engine) -> float:
        with engine.begin() as conn:
            conn.execute(STORE.drop_index())
            for statement in settings:
                conn.execute(statement)
            started = time.perf_counter()
            conn.execute(STORE.create_index())
            return time.perf_counter() - started

    return measure


def rss_child(url: str) -> None:
    """In a fresh process that does nothing else: run the engine; print its peak RSS."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        report = run_reembed(conn, HashEmbedder(384), ReembedPlan(batch_size=BATCH, commit_batches=True))
    print(json.dumps({"rows": report.rows_updated, "peak_mb": peak_rss_mb()}))


def measure_rss(server: Any, rows: int) -> dict[str, float]:
    """Seed `rows` here, run the engine in a child process and read its peak RSS."""
    engine = fresh_database(server, f"rss_{rows}")
    seed(engine, HashEmbedder(256), memories(rows))
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    out = subprocess.run([sys.executable, __file__, "--rss-child", url], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def hashing(server: Any, rows: int, repeats: int) -> None:
    texts = memories(rows)
    seeded_database(server, "hash_store", HashEmbedder(256), texts)
    hasher = HashEmbedder(384)
    print(f"\nhashing embedder, {rows} rows, batches of {BATCH} (rows/s):")
    cpu = {name: Figure(name, "CPU s") for name in (PURE, QUEUED)}
    figures = alternate(
        {
            PURE: lambda: pure_rate(hasher, texts, cpu[PURE]),
            QUEUED: lambda: on_copy(server, "hash_store", write_rate(write_unnest, queued=True, cpu=cpu[QUEUED])),
            ONE_AT_A_TIME: lambda: on_copy(server, "hash_store", write_rate(write_unnest)),
            DATA_PASS: lambda: on_copy(server, "hash_store", engine_rate(hasher)),
            BOTH: lambda: on_copy(server, "hash_store", write_rate(write_unnest, queued=True, hasher=hasher)),
            DB_WORK: lambda: on_copy(server, "hash_store", database_work),
            "binary COPY + UPDATE ... FROM": lambda: on_copy(server, "hash_store", write_rate(write_copy)),
            "per row, text vectors (fallback)": lambda: on_copy(
                server, "hash_store", write_rate(write_per_row, rows // 10)
            ),
        },
        repeats,
        "rows/s",
    )
    for figure in figures.values():
        print(figure.line())
    pure, write = figures[PURE].median, max(figures[QUEUED].median, figures[ONE_AT_A_TIME].median)
    data_pass, both = figures[DATA_PASS].median, figures[BOTH].median
    print(ratio_line("data pass / min(pure hashing, raw write)", data_pass, min(pure, write), TARGET))
    limits = [
        min(p, max(q, o))
        for p, q, o in zip(figures[PURE].values, figures[QUEUED].values, figures[ONE_AT_A_TIME].values, strict=True)
    ]
    print(paired_ratio_line("data pass / min(pure hashing, raw write)", figures[DATA_PASS].values, limits, TARGET))
    # Hashing and writing share the machine's cores: at once, each goes slower than alone.
    print(ratio_line("data pass / both at once (each batch hashed, then queued)", data_pass, both, TARGET))
    print(f"  both at once / min(pure hashing, raw write): {both / min(pure, write):.1%} (the cores shared)")
    print(
        f"  its database work alone / raw write: {figures[DB_WORK].median / write:.1%} (the server reads the rows too)"
    )
    needed = cpu[PURE].median / rows + cpu[QUEUED].median / rows  # CPU seconds per row, whole machine
    print(
        f"  machine CPU per row: pure hashing {cpu[PURE].median / rows * 1e6:.1f} us + queued write "
        f"{cpu[QUEUED].median / rows * 1e6:.1f} us (server, client, WAL writer) on {os.cpu_count()} cores "
        f"(were they shared perfectly: {(os.cpu_count() or 1) / needed:.0f} rows/s for both)"
    )


def minilm(server: Any, rows: int, repeats: int) -> None:
    docs = [d.content for d in stdlib_docs()][:rows]
    repeated = with_repeats(docs, REPEATED)
    seeded_database(server, "minilm_store", HashEmbedder(256), docs)
    seeded_database(server, "repeats_store", HashEmbedder(256), repeated)
    model = resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir)
    distinct = len(set(repeated))
    print(f"\nall-MiniLM-L6-v2, {rows} stdlib docstrings, threads: one per core (texts or rows/s):")
    figures = alternate(
        {
            PURE_EMBEDDING: lambda: pure_rate(model, docs),
            DATA_PASS: lambda: on_copy(server, "minilm_store", engine_rate(model)),
            f"engine, {REPEATED:.0%} repeated contents": lambda: on_copy(server, "repeats_store", engine_rate(model)),
        },
        repeats,
        "/s",
    )
    for figure in figures.values():
        print(figure.line(1))
    pure = figures[PURE_EMBEDDING].median
    print(ratio_line("data pass / pure embedding", figures[DATA_PASS].median, pure, TARGET))
    pures = figures[PURE_EMBEDDING].values
    print(paired_ratio_line("data pass / pure embedding", figures[DATA_PASS].values, pures, TARGET))
    print(
        f"  repeated contents: {rows} rows, {distinct} distinct, embedded once each: "
        f"{figures[f'engine, {REPEATED:.0%} repeated contents'].median / pure:.1%} of pure embedding of every row"
    )


def hnsw(server: Any, rows: int, repeats: int) -> None:
    seeded_database(server, "index_store", HashEmbedder(384), memories(rows))
    settings = index_build_settings(ReembedPlan(), STORE, rows, 384)
    engine = copy_database(server, "index_store", "show")
    with engine.begin() as conn:
        for statement in settings:
            conn.execute(statement)
        names = ("maintenance_work_mem", "max_parallel_maintenance_workers")
        shown = ", ".join(f"{n}={conn.execute(current_setting(n)).scalar()}" for n in names)
    engine.dispose()
    print(f"\nHNSW rebuild, {rows} x 384 (seconds); the engine's settings: {shown}")
    figures = alternate(
        {
            "engine settings": lambda: on_copy(server, "index_store", index_build(settings)),
            "PostgreSQL defaults": lambda: on_copy(server, "index_store", index_build([])),
        },
        repeats,
        "s",
    )
    for figure in figures.values():
        print(figure.line(2))
    print(f"  speed-up: {figures['PostgreSQL defaults'].median / figures['engine settings'].median:.1f}x (medians)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (make bench-quick)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help="rounds per figure (default 3; the hashing figures take three times as many)",
    )
    parser.add_argument("--only", choices=SECTIONS, action="append", help="these sections (default: all)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    rows, minilm_rows, index_rows = (4_000, 300, 4_000) if args.quick else (20_000, 2_000, 50_000)
    rss_sizes = (2_000, 10_000) if args.quick else (20_000, 100_000)
    print(f"cpus: {os.cpu_count()}  repeats: {args.repeats}  (median [lowest .. highest])")
    # Stop the server before its data folder is deleted (not at interpreter exit).
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-engine-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        only = args.only or SECTIONS
        if "hashing" in only:
            hashing(server, rows, args.repeats * HASHING_ROUNDS)
        if "minilm" in only:
            minilm(server, minilm_rows, args.repeats)
        if "hnsw" in only:
            hnsw(server, index_rows, args.repeats)
        if "rss" not in only:
            return
        small, large = (measure_rss(server, n) for n in rss_sizes)
    growth = large["peak_mb"] - small["peak_mb"]
    verdict = "PASS" if growth <= 30 else "FAIL"
    print(
        f"\npeak RSS of the engine process (one run each): {small['peak_mb']:.0f} MB at {rss_sizes[0]} rows, "
        f"{large['peak_mb']:.0f} MB at {rss_sizes[1]} rows: {growth:+.1f} MB (target <= 30 MB: {verdict})"
    )


if __name__ == "__main__":
    main()
