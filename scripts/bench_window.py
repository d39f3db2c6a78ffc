"""Maintenance window of a model change: in place vs staged, with the real MiniLM.

The window is the time from the first statement that blocks search to the registry
update (`ReembedReport.window_secs`). Measured at 20,000 rows (stdlib docstrings,
cycled with a row number so every text is distinct), moving from vestige/hash-256 to
all-MiniLM-L6-v2, on a private embedded PostgreSQL:

- in place: the Alembic revision's path (atomic; embed every row inside the window);
- staged, approach B: relax the typmod, apply staged vectors, tighten, build the index;
- staged, approach C: apply into a new `vector(384)` column, drop and rename, build;
- staged swap: the new column and its index built CONCURRENTLY before the window.

Run: `make bench` or `.venv/bin/python scripts/bench_window.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_db import fresh_database, seed

from vestige_embed import HashEmbedder, ReembedPlan, resolve_embedder, run_reembed, stage
from vestige_embed.demo.corpus import stdlib_docs
from vestige_embed.run.plan import TypmodApproach
from vestige_embed.run.staging import drop_staging
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.embedded import server_url, start_server

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEMPLATE = "window_template"


def texts(rows: int) -> list[str]:
    docs = [d.content for d in stdlib_docs()]
    return [f"{docs[i % len(docs)]} (memory {i})" for i in range(rows)]


def build_template(server: object, rows: int) -> float:
    """A database at 0001 with `rows` rows on hash-256 and MiniLM vectors staged; returns staging secs."""
    engine = fresh_database(server, TEMPLATE)
    seed(engine, HashEmbedder(256), texts(rows))
    started = time.perf_counter()
    with engine.connect() as conn:
        stage(conn, resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir))
    staged = time.perf_counter() - started
    engine.dispose()
    return staged


def copy_of_template(server: object, name: str, *, keep_staging: bool) -> sa.Engine:
    info = server.get_postmaster_info()  # type: ignore[attr-defined]
    with psycopg.connect(
        host=str(info.socket_dir), port=info.port, user="postgres", dbname="postgres", autocommit=True
    ) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    engine = sa.create_engine(
        server_url(server, name).render_as_string(hide_password=False), poolclass=sa.pool.NullPool
    )
    if not keep_staging:
        with engine.begin() as conn:
            drop_staging(conn)
    return engine


def measure(server: object, name: str, plan: ReembedPlan, *, staged: bool) -> tuple[float, float, float]:
    engine = copy_of_template(server, name, keep_staging=staged)
    embedder = resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir)
    started = time.perf_counter()
    with engine.connect() as conn:
        report = run_reembed(conn, embedder, plan)
        conn.commit()
    total = time.perf_counter() - started
    engine.dispose()
    return report.window_secs, total, report.index_rebuild_secs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Stop the server before its data folder is deleted (not at interpreter exit).
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-window-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        print(f"rows: {args.rows}  model: hash-256 -> {MINILM}  cpus: {os.cpu_count()}")
        staging_secs = build_template(server, args.rows)
        print(f"staging (outside the window, search served): {staging_secs:.1f} s")
        variants = [
            ("in place (alembic upgrade)", ReembedPlan(), False),
            ("staged, approach B", ReembedPlan(typmod_approach=TypmodApproach.AUTO), True),
            ("staged, approach C", ReembedPlan(typmod_approach=TypmodApproach.NEW_COLUMN), True),
            ("staged swap, prebuilt index", ReembedPlan(concurrent_index=True, commit_batches=True), True),
        ]
        results = {}
        print(f"{'variant':32} {'window s':>9} {'total s':>9} {'index s':>9}")
        for i, (label, plan, staged) in enumerate(variants):
            window, total, index_secs = measure(server, f"variant_{i}", plan, staged=staged)
            results[label] = window
            print(f"{label:32} {window:9.2f} {total:9.2f} {index_secs:9.2f}")
        in_place = results["in place (alembic upgrade)"]
        for label, window in list(results.items())[1:]:
            ratio = window / in_place
            verdict = "PASS" if ratio <= 0.1 else "FAIL"
            print(f"{label:32} window / in-place = {ratio:.3f}  (target <= 0.100: {verdict})")


if __name__ == "__main__":
    main()
