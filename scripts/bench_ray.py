"""Staging on Ray against single-process staging, and the staging write path against COPY.

Same rows, same server (a private embedded PostgreSQL), each run from a fresh copy of
the same seeded database; contenders alternate (scripts/_bench_stats.py):
- `stage()` in this process;
- `stage_on_ray` with 1 and with 2 actors of 1 CPU on a local cluster started once
  (its start-up is printed apart; each run includes its actors' start and model load);
for the hashing embedder and for MiniLM. Wall seconds, and the machine's CPU seconds
(all processes: driver, Ray, workers and PostgreSQL, from /proc/stat).
Then the staging write path (`StagingWriter`: binary arrays, one upsert) in rows/s,
against binary COPY of the same rows into an unindexed table, on the same server.

Run: `.venv/bin/python scripts/bench_ray.py [--rows N] [--minilm-rows N] [--repeats N]`
(needs the ray extra: pip install 'vestige-embed[ray]'). On a GPU machine, `--gpus 1`
adds Ray with one actor on the GPU, on a non-quantized model (`--gpu-model`, downloaded
by fastembed: run it with HF_HUB_OFFLINE=0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import sqlalchemy as sa
from _bench_common import machine_cpu_secs
from _bench_db import STORE, copy_database, docstring_texts, seeded_database
from _bench_stats import DEFAULT_REPEATS, Figure, alternate
from psycopg import sql

from vestige_embed import Embedder, HashEmbedder, resolve_embedder, stage
from vestige_embed.run.distributed import RayOptions, stage_on_ray
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.embedded import server_url, start_server
from vestige_embed.store.writes import StagingWriter
from vestige_embed.target import DEFAULT_TARGET

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
SEED = "ray_seed"


def measured(run: Callable[[], None], cpu: Figure) -> float:
    """Runs `run`; returns its wall seconds and records the machine's CPU seconds in `cpu`."""
    cpu_before, started = machine_cpu_secs(), time.perf_counter()
    run()
    wall = time.perf_counter() - started
    cpu.values.append(machine_cpu_secs() - cpu_before)
    return wall


def contenders(
    server: Any, embedder: Embedder, cpu: dict[str, Figure], gpus: float = 0.0
) -> dict[str, Callable[[], float]]:
    def single() -> None:
        engine = copy_database(server, SEED, "ray_run")
        with engine.connect() as conn:
            stage(conn, embedder)
        engine.dispose()

    def on_ray(workers: int, gpus_per_worker: float = 0.0) -> Callable[[], None]:
        def run() -> None:
            engine = copy_database(server, SEED, "ray_run")
            url = engine.url.render_as_string(hide_password=False)
            options = RayOptions(workers=workers, gpus_per_worker=gpus_per_worker)
            with engine.connect() as conn:
                stage_on_ray(conn, url, embedder, options, target=DEFAULT_TARGET)
            engine.dispose()

        return run

    runs = {"single process": single, "Ray, 1 actor": on_ray(1), "Ray, 2 actors": on_ray(2)}
    if gpus:
        runs[f"Ray, 1 actor, {gpus:g} GPU"] = on_ray(1, gpus)
    for name in runs:
        cpu[name] = Figure(name, "CPU s")
    return {name: (lambda run=run, name=name: measured(run, cpu[name])) for name, run in runs.items()}


def compare(server: Any, embedder: Embedder, rows: int, repeats: int, gpus: float = 0.0) -> None:
    seeded_database(server, SEED, HashEmbedder(256), docstring_texts(rows))
    cpu: dict[str, Figure] = {}
    walls = alternate(contenders(server, embedder, cpu, gpus), repeats, "s")
    print(f"\n{embedder.name}, {rows} rows: wall, then the machine's CPU seconds")
    for name, figure in walls.items():
        print(figure.line(1))
        print(cpu[name].line(1))


def write_paths(server: Any, rows: int, repeats: int) -> None:
    """The staging upsert against binary COPY of the same keys and vectors."""
    seeded_database(server, SEED, HashEmbedder(256), docstring_texts(rows))
    engine = copy_database(server, SEED, "ray_writes")
    with engine.connect() as conn:
        keys, texts = zip(
            *conn.execute(sa.text("SELECT id, content FROM knowledge_nodes ORDER BY id")).all(), strict=True
        )
        hashes = [bytes(h) for h in conn.execute(sa.select(STORE.content_hash).order_by(STORE.key)).scalars()]
    vectors = HashEmbedder(384).embed_batch(list(texts))
    signature = HashEmbedder(384).signature()
    batch = 1000

    def upsert() -> float:
        with engine.connect() as conn:
            for statement in STORE.create_staging():
                conn.execute(statement)
            conn.execute(STORE.staging.delete())
            conn.commit()
            writer = StagingWriter(conn, STORE, signature)
            started = time.perf_counter()
            for at in range(0, len(keys), batch):
                writer(list(keys[at : at + batch]), hashes[at : at + batch], vectors[at : at + batch])
                conn.commit()
            return len(keys) / (time.perf_counter() - started)

    def copy() -> float:
        with engine.connect() as conn:
            driver = conn.connection.driver_connection
            assert driver is not None
            from pgvector.psycopg import register_vector

            register_vector(driver)
            conn.execute(sa.text("DROP TABLE IF EXISTS copy_target"))
            conn.execute(sa.text("CREATE UNLOGGED TABLE copy_target (row_key uuid, staged_vector vector, sha bytea)"))
            conn.commit()
            started = time.perf_counter()
            target = sql.SQL("COPY copy_target FROM STDIN WITH (FORMAT BINARY)")
            for at in range(0, len(keys), batch):
                with driver.cursor() as cur, cur.copy(target) as out:
                    out.set_types(["uuid", "vector", "bytea"])
                    for key, vector, digest in zip(
                        keys[at : at + batch], vectors[at : at + batch], hashes[at : at + batch], strict=True
                    ):
                        out.write_row((key, np.asarray(vector), digest))
                driver.commit()
            return len(keys) / (time.perf_counter() - started)

    figures = alternate({"staging upsert (StagingWriter)": upsert, "binary COPY, no index": copy}, repeats, "rows/s")
    print(f"\nstaging write path, {len(keys)} rows of 384-d vectors, batches of {batch}")
    for figure in figures.values():
        print(figure.line())
    share = figures["staging upsert (StagingWriter)"].median / figures["binary COPY, no index"].median
    print(f"  upsert / COPY: {share:.0%}")
    with engine.connect() as conn:
        conn.execute(STORE.drop_staging())  # the rounds above left dead rows behind: measure one pass
        conn.commit()
    upsert()
    with engine.connect() as conn:
        size = conn.execute(sa.select(sa.func.pg_total_relation_size(STORE.relation(STORE.target.staging_table))))
        print(f"  staging table: {size.scalar_one() / len(keys):,.0f} bytes per staged row (vector, hash, indexes)")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="rows for the hashing embedder (default 20,000)")
    parser.add_argument("--minilm-rows", type=int, default=1_000, help="rows for MiniLM (default 1,000)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument(
        "--gpus",
        type=float,
        default=0.0,
        help="on a machine with a GPU (onnxruntime-gpu installed): also Ray with 1 actor of this many GPUs, "
        "on --gpu-model",
    )
    parser.add_argument(
        "--gpu-model",
        default="BAAI/bge-small-en-v1.5",
        help="a non-quantized model for the GPU runs (fastembed downloads it with HF_HUB_OFFLINE=0; "
        "default BAAI/bge-small-en-v1.5)",
    )
    args = parser.parse_args()
    import ray

    os.environ.setdefault("VESTIGE_MODELS_DIR", str(load_settings().models_dir.resolve()))
    with tempfile.TemporaryDirectory(prefix="vestige-bench-ray-") as folder:
        server = start_server(Path(folder) / "pgdata")
        print(f"server: {server_url(server, 'postgres').render_as_string()}; {os.cpu_count()} CPUs")
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        print(f"local Ray cluster started in {time.perf_counter() - started:.1f} s (not in the figures below)")
        compare(server, HashEmbedder(384), args.rows, args.repeats)
        compare(
            server, resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir), args.minilm_rows, args.repeats
        )
        if args.gpus:
            gpu_model = resolve_embedder(args.gpu_model, models_dir=load_settings().models_dir)
            compare(server, gpu_model, args.minilm_rows, args.repeats, args.gpus)
        write_paths(server, args.rows, args.repeats)
        ray.shutdown()


if __name__ == "__main__":
    main()
