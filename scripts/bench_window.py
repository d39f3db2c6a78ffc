"""Maintenance window of a model change, with the real MiniLM: medians of alternating rounds.

The window is the time from the first statement that blocks search to the registry
update (`ReembedReport.window_secs`); "writers held" is how long the run kept the
application's writes waiting (`writes_blocked_secs`). Measured at 20,000 rows (stdlib
docstrings, cycled with a row number so every text is distinct), moving from
vestige/hash-256 to all-MiniLM-L6-v2, each sample on a fresh copy of one database:

- in place: `alembic upgrade` with nothing staged (every row embedded inside the window);
- staged, the defaults: after `vestige migrate stage`, `alembic upgrade` (Alembic's
  autocommit block) and `vestige migrate reembed` (batched) both build the new column and
  its index before the window, which is then catalog-only (target: under 1 s);
- staged, `prebuild_index=False`: the staged vectors applied and the index built inside
  the window, by approach B (relax and tighten the typmod) and approach C (new column).

Run: `make bench` (or `make bench-quick`), or
`.venv/bin/python scripts/bench_window.py [--rows N] [--repeats N]`.
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
from _bench_stats import DEFAULT_REPEATS, Figure

from vestige_embed import Embedder, HashEmbedder, ReembedPlan, resolve_embedder, run_reembed, stage
from vestige_embed.run.context import own_autocommit_block
from vestige_embed.run.plan import TypmodApproach
from vestige_embed.run.staging import drop_staging
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.embedded import start_server

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEMPLATE = "window_template"
#: The default staged change's window and writers' wait must stay under this.
SECONDS_TARGET = 1.0


def build_template(server: Any, rows: int, embedder: Embedder) -> float:
    """A database at 0001 with `rows` rows on hash-256 and MiniLM vectors staged; returns staging secs."""
    engine = fresh_database(server, TEMPLATE)
    seed(engine, HashEmbedder(256), docstring_texts(rows))
    started = time.perf_counter()
    with engine.connect() as conn:
        stage(conn, embedder)
    staged = time.perf_counter() - started
    engine.dispose()
    return staged


def measure(server: Any, embedder: Embedder, plan: ReembedPlan, *, staged: bool) -> dict[str, float]:
    engine = copy_database(server, TEMPLATE, "variant")
    try:
        if not staged:
            with engine.begin() as conn:
                drop_staging(conn)
        started = time.perf_counter()
        with engine.connect() as conn:
            block = None if plan.commit_batches else own_autocommit_block(conn)  # as Alembic's
            report = run_reembed(conn, embedder, plan, autocommit_block=block)
            conn.commit()
        total = time.perf_counter() - started
    finally:
        engine.dispose()
    return {
        "window": report.window_secs,
        "writers held": report.writes_blocked_secs,
        "total": total,
        "index": report.index_rebuild_secs,
        "strategy": report.strategy,  # type: ignore[dict-item]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="rounds per figure (default 3)")
    args = parser.parse_args()
    embedder = resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir)
    variants = {
        "in place (alembic upgrade)": (ReembedPlan(), False),
        "staged, alembic upgrade (default)": (ReembedPlan(), True),
        "staged, migrate reembed (default)": (ReembedPlan(commit_batches=True), True),
        "staged, no prebuild, approach B": (ReembedPlan(prebuild_index=False), True),
        "staged, no prebuild, approach C": (
            ReembedPlan(prebuild_index=False, typmod_approach=TypmodApproach.NEW_COLUMN),
            True,
        ),
    }
    names = list(variants)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    # Stop the server before its data folder is deleted (not at interpreter exit).
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-window-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        print(f"rows: {args.rows}  model: hash-256 -> {MINILM}  cpus: {os.cpu_count()}  repeats: {args.repeats}")
        staging_secs = build_template(server, args.rows, embedder)
        print(f"staging (outside the window, search served): {staging_secs:.1f} s")
        for r in range(args.repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                plan, staged = variants[name]
                samples[name].append(measure(server, embedder, plan, staged=staged))
    print("median seconds [lowest .. highest]:")
    windows = {}
    for name in names:
        strategy = samples[name][0]["strategy"]
        print(f"{name} ({strategy}):")
        for key in ("window", "writers held", "index", "total"):
            figure = Figure(key, "s", [s[key] for s in samples[name]])
            print("  " + figure.line(3))
            if key == "window":
                windows[name] = figure.median
    in_place = windows["in place (alembic upgrade)"]
    for name in names[1:]:
        print(f"{name}: window / in place = {windows[name] / in_place:.3f}")
    for name in ("staged, alembic upgrade (default)", "staged, migrate reembed (default)"):
        for key in ("window", "writers held"):
            median = Figure(key, "s", [s[key] for s in samples[name]]).median
            verdict = "PASS" if median < SECONDS_TARGET else "FAIL"
            print(f"{name}: {key} {median:.2f} s (target < {SECONDS_TARGET:.0f} s: {verdict})")


if __name__ == "__main__":
    main()
