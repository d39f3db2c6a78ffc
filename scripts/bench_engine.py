"""The re-embed engine's speed and memory, in one run on one private embedded PostgreSQL.

Prints:
- rows/s of the write paths alone (binary UNNEST, binary COPY + UPDATE ... FROM, per row),
  writing precomputed 384-d vectors, batches of 128, no HNSW index;
- rows/s of the engine's data pass with the hashing embedder, against the raw write rate
  (target: 50% or more);
- the engine with all-MiniLM-L6-v2 against MiniLM's pure embedding rate (target: 90%+);
- the HNSW rebuild with the engine's settings against PostgreSQL's defaults;
- peak RSS of a process running the engine at 20,000 and at 100,000 rows (target: the
  100k figure within 30 MB of the 20k one).

Run: `make bench` or `.venv/bin/python scripts/bench_engine.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _bench_common import peak_rss_mb
from _bench_db import STORE, fresh_database, seed
from _bench_writes import write_copy, write_per_row

from vestige_embed import HashEmbedder, ReembedPlan, resolve_embedder, run_reembed
from vestige_embed.demo.corpus import stdlib_docs
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.embedded import start_server
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target.statements import current_setting

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BATCH = 128


def memories(n: int) -> list[str]:
    return [f"memory number {i} talks about rust and async, postgres and vector search" for i in range(n)]


_writers: dict[int, VectorWriter] = {}


def write_unnest(conn: sa.Connection, column: str, ids: list, vectors: np.ndarray) -> int:  # type: ignore[type-arg]
    """The engine's write path (one writer per connection, as a run has)."""
    writer = _writers.setdefault(id(conn), VectorWriter(conn, STORE, column))
    return writer(ids, vectors)


def write_rate(engine: sa.Engine, ids: list, writer, dim: int = 384) -> float:  # type: ignore[no-untyped-def]
    vectors = np.random.default_rng(1).standard_normal((len(ids), dim)).astype(np.float32)
    with engine.begin() as conn:
        conn.execute(STORE.drop_index())
        conn.execute(STORE.relax())
        writer(conn, "embedding", ids[:1], vectors[:1])  # registers the binary dumpers, outside the timing
        started = time.perf_counter()
        for i in range(0, len(ids), BATCH):
            writer(conn, "embedding", ids[i : i + BATCH], vectors[i : i + BATCH])
        return len(ids) / (time.perf_counter() - started)


def engine_rate(engine: sa.Engine, embedder, batch: int = BATCH) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        report = run_reembed(conn, embedder, ReembedPlan(batch_size=batch))
        conn.commit()
    return report.rows_updated / report.data_pass_secs, report.index_rebuild_secs


def rss_child(url: str) -> None:
    """In a fresh process that does nothing else: run the engine; print its peak RSS."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        report = run_reembed(conn, HashEmbedder(384), ReembedPlan(batch_size=BATCH, commit_batches=True))
    peak = peak_rss_mb()
    print(json.dumps({"rows": report.rows_updated, "peak_mb": peak}))


def measure_rss(server: object, rows: int) -> dict[str, float]:
    """Seed `rows` here, run the engine in a child process and read its peak RSS."""
    engine = fresh_database(server, f"rss_{rows}")
    seed(engine, HashEmbedder(256), memories(rows))
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    out = subprocess.run([sys.executable, __file__, "--rss-child", url], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.rss_child)
        return
    rows = 4_000 if args.quick else 20_000
    minilm_rows = 300 if args.quick else 2_000
    rss_sizes = (4_000, 20_000) if args.quick else (20_000, 100_000)
    index_rows = 4_000 if args.quick else 50_000
    print(f"cpus: {os.cpu_count()}  rows: {rows}  batch: {BATCH}")
    # Stop the server before its data folder is deleted (not at interpreter exit).
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-engine-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        engine = fresh_database(server, "bench")
        ids = seed(engine, HashEmbedder(256), memories(rows))

        print("\nwrite paths alone (precomputed 384-d vectors):")
        raw = write_rate(engine, ids, write_unnest)
        print(f"  binary UNNEST (the engine's)   {raw:9.0f} rows/s")
        print(f"  binary COPY + UPDATE ... FROM  {write_rate(engine, ids, write_copy):9.0f} rows/s")
        per_row = write_rate(engine, ids[: rows // 10], write_per_row)
        print(f"  per row, text vectors          {per_row:9.0f} rows/s (fallback only)")

        engine = fresh_database(server, "bench")
        seed(engine, HashEmbedder(256), memories(rows))
        hashed, _ = engine_rate(engine, HashEmbedder(384))
        share = hashed / raw
        print(
            f"\nengine data pass, hash-256 -> hash-384: {hashed:.0f} rows/s = {share:.0%} of raw writes"
            f" (target >= 50%: {verdict(share >= 0.5)})"
        )

        docs = [d.content for d in stdlib_docs()][:minilm_rows]
        minilm = resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir)
        minilm.embed_batch(docs[:16])
        started = time.perf_counter()
        for i in range(0, len(docs), BATCH):
            minilm.embed_batch(docs[i : i + BATCH])
        pure = len(docs) / (time.perf_counter() - started)
        engine = fresh_database(server, "bench")
        seed(engine, HashEmbedder(256), docs)
        with_minilm, _ = engine_rate(engine, minilm)
        share = with_minilm / pure
        print(f"MiniLM pure embedding ({len(docs)} stdlib docstrings): {pure:.0f} texts/s")
        print(
            f"engine data pass with MiniLM: {with_minilm:.0f} rows/s = {share:.0%} of pure embedding"
            f" (target >= 90%: {verdict(share >= 0.9)})"
        )

        engine = fresh_database(server, "bench")
        seed(engine, HashEmbedder(384), memories(index_rows))
        plan = ReembedPlan()
        settings = STORE.build_settings(
            index_rows,
            384,
            explicit_mb=plan.maintenance_work_mem_mb,
            cap_mb=plan.maintenance_work_mem_cap_mb,
            workers=plan.max_parallel_maintenance_workers,
        )
        names = ("maintenance_work_mem", "max_parallel_maintenance_workers")
        timings = {}
        for label, chosen in (("engine settings", settings), ("PostgreSQL defaults", [])):
            with engine.begin() as conn:
                conn.execute(STORE.drop_index())
                for statement in chosen:
                    conn.execute(statement)
                shown = {name: conn.execute(current_setting(name)).scalar() for name in names}
                started = time.perf_counter()
                conn.execute(STORE.create_index())
                timings[label] = time.perf_counter() - started
            print(f"HNSW rebuild, {index_rows} x 384, {label} ({shown}): {timings[label]:.1f} s")
        print(f"  speed-up: {timings['PostgreSQL defaults'] / timings['engine settings']:.1f}x")
        engine.dispose()
        small, large = (measure_rss(server, n) for n in rss_sizes)
    growth = large["peak_mb"] - small["peak_mb"]
    print(
        f"\npeak RSS of the engine process: {small['peak_mb']:.0f} MB at {rss_sizes[0]} rows, "
        f"{large['peak_mb']:.0f} MB at {rss_sizes[1]} rows: {growth:+.1f} MB (target <= 30 MB: {verdict(growth <= 30)})"
    )


if __name__ == "__main__":
    main()
