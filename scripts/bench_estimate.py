"""The dry run's estimate against the measured run, for the hashing embedder and MiniLM.

At N rows (20,000 by default; stdlib docstrings, cycled with a row number so every text is
distinct) on a private embedded PostgreSQL: `dry_run_reembed` measures (a sample embedded,
distinct contents counted, an index built on a scratch table) and estimates each path;
then each path runs on a fresh copy of the same database and is timed end to end:
- this command's path, `vestige migrate reembed` (stage, prebuild the index, swap);
- `alembic upgrade` with nothing staged (in place, all of it a window).
Target: every estimate within a factor of 1.5 of the measured time.

Run: `.venv/bin/python scripts/bench_estimate.py [--rows N]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _bench_db import copy_database, docstring_texts, fresh_database, seed

from vestige_embed import Embedder, HashEmbedder, ReembedPlan, dry_run_reembed, resolve_embedder, run_reembed
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.embedded import start_server

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
FACTOR = 1.5


def timed_run(server: Any, embedder: Embedder, plan: ReembedPlan, name: str) -> float:
    engine = copy_database(server, "estimate_store", name)
    started = time.perf_counter()
    with engine.connect() as conn:
        run_reembed(conn, embedder, plan)
        conn.commit()
    engine.dispose()
    return time.perf_counter() - started


def compare(server: Any, embedder: Embedder, rows: int) -> list[bool]:
    engine = fresh_database(server, "estimate_store")
    seed(engine, HashEmbedder(256), docstring_texts(rows))
    with engine.connect() as conn:
        found = dry_run_reembed(conn, embedder, ReembedPlan(commit_batches=True)).estimate
        conn.rollback()
    engine.dispose()
    assert found is not None
    print(f"\n{embedder.name}, {rows} rows")
    print(f"  basis: {found.basis()}")
    verdicts = []
    for label, estimated, plan in (
        ("vestige migrate reembed (staged)", found.staged_secs, ReembedPlan(commit_batches=True)),
        ("alembic upgrade, nothing staged", found.in_place_secs, ReembedPlan()),
    ):
        measured = timed_run(server, embedder, plan, "estimate_run")
        ratio = estimated / measured
        ok = 1 / FACTOR <= ratio <= FACTOR
        verdicts.append(ok)
        print(
            f"  {label:34} estimated {estimated:8.1f} s  measured {measured:8.1f} s  "
            f"estimate/measured {ratio:5.2f} (target within {FACTOR}x: {'PASS' if ok else 'FAIL'})"
        )
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    minilm = resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir)
    print(f"cpus: {os.cpu_count()}")
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-estimate-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        compare(server, HashEmbedder(384), args.rows)
        compare(server, minilm, args.rows)


if __name__ == "__main__":
    main()
