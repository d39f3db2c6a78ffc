"""A run killed at each of its steps (SIGKILL of a real process, or its connection ended by
the server): the store is exactly as before, search stays on the old model, the server
lets go of the table within seconds, and running the same command again finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_tool
from tests.conftest import MODELS_DIR
from tests.helpers import (
    PSQL,
    WORKER,
    column_typmod,
    index_validity,
    kill_at,
    memories,
    read_until,
    registry_of,
    seed_store,
)
from vestige_embed import HashEmbedder, ReembedPlan, resolve_embedder, run_reembed, stage
from vestige_embed.target import DEFAULT_TARGET, ModelState
from vestige_embed.target.statements import CLIENT_CHECK_INTERVAL

pytestmark = pytest.mark.slow

OLD, NEW = HashEmbedder(64), HashEmbedder(128)
ROWS = 6000
#: The worker's backend must be gone this soon after its process was killed.
LET_GO_SECS = 2 * float(CLIENT_CHECK_INTERVAL.removesuffix("s")) + 1


@pytest.fixture
def store(base_schema: sa.Engine) -> sa.Engine:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))
    return base_schema


def snapshot(engine: sa.Engine) -> dict[Any, tuple[str, bytes]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, content, embedding::text FROM knowledge_nodes")).all()
    return {r[0]: (r[1], r[2]) for r in rows}


#: A run names its connection after itself (`vestige-embed: <target> -> <model>`).
RUN_BACKENDS = "FROM pg_stat_activity WHERE application_name LIKE 'vestige-embed: %'"


def worker_backends(engine: sa.Engine) -> int:
    query = f"SELECT count(*) {RUN_BACKENDS}"
    with engine.connect() as conn:
        return int(conn.execute(sa.text(query)).scalar_one())


def assert_let_go(engine: sa.Engine) -> float:
    """Seconds until the killed run's backend has ended (its transaction rolled back)."""
    started = time.monotonic()
    while worker_backends(engine):
        assert time.monotonic() - started < LET_GO_SECS, "the killed run's backend still holds the table"
        time.sleep(0.05)
    return time.monotonic() - started


def assert_unchanged(engine: sa.Engine, before: dict[Any, tuple[str, bytes]]) -> None:
    assert snapshot(engine) == before
    with engine.connect() as conn:
        registry = registry_of(conn)
        assert (registry.signature, registry.state) == (OLD.signature(), ModelState.READY)
        assert column_typmod(conn) == OLD.dimension
        assert index_validity(conn) is True


def assert_the_rerun_finishes(engine: sa.Engine, batched: bool) -> None:
    with engine.connect() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(batch_size=1024, commit_batches=batched))
        conn.commit()
    assert report.rows_updated == ROWS
    with engine.connect() as conn:
        assert registry_of(conn).signature == NEW.signature()
        assert column_typmod(conn) == NEW.dimension
        assert index_validity(conn) is True
    rows = snapshot(engine)
    contents = [content for content, _ in rows.values()]
    expected = NEW.embed_batch(contents)
    stored = np.array([np.array(vector.strip("[]").split(","), dtype=np.float32) for _, vector in rows.values()])
    np.testing.assert_allclose(stored, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "marker", "after"),
    [
        ("atomic", "reembed: tightening embedding", 0.0),
        ("atomic", f"reembed: building {DEFAULT_TARGET.index} ", 0.2),
        ("batched", f"reembed: building {DEFAULT_TARGET.next_index} CONCURRENTLY", 0.2),
        ("batched", "added or edited since staging", 0.0),
    ],
    ids=["tightening", "index build", "create index concurrently", "swap window"],
)
def test_a_run_killed_at_a_step_changes_nothing_and_its_rerun_finishes(
    store: sa.Engine, db_url: str, mode: str, marker: str, after: float
) -> None:
    before = snapshot(store)
    kill_at(db_url, mode, marker, after=after)
    assert_let_go(store)
    assert_unchanged(store, before)
    assert_the_rerun_finishes(store, batched=mode == "batched")


def test_a_run_killed_in_a_long_index_build_lets_go_of_the_table_within_seconds(store: sa.Engine, db_url: str) -> None:
    before = snapshot(store)
    kill_at(db_url, "atomic", f"reembed: building {DEFAULT_TARGET.index} ", speed="heavy", after=1.0)
    assert_let_go(store)  # without the client check, the orphaned build runs on, holding the table
    assert_unchanged(store, before)


def test_a_run_whose_connection_the_server_ends_changes_nothing_and_its_rerun_finishes(
    store: sa.Engine, db_url: str
) -> None:
    before = snapshot(store)
    env = {**os.environ, "PYTHONPATH": str(WORKER.parent.parent)}
    with subprocess.Popen(
        [sys.executable, str(WORKER), db_url, "atomic"], stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stderr is not None
        read_until(proc.stderr, "wrote batch 3 ")
        end = f"SELECT pg_terminate_backend(pid) {RUN_BACKENDS}"
        with store.connect() as conn:
            ended = conn.execute(sa.text(end)).scalar()
        assert ended is True
        rest = proc.stderr.read()
    # The server's own words when it answers; libpq's when the connection drops while the
    # run's queued writes are still being sent (pipeline mode).
    assert proc.returncode == 1
    assert "terminating connection" in rest or "server closed the connection unexpectedly" in rest
    assert_unchanged(store, before)
    assert_the_rerun_finishes(store, batched=False)


def test_the_offline_script_killed_mid_way_changes_nothing_and_runs_again(
    base_schema: sa.Engine, postgresql: psycopg.Connection[Any], db_url: str, tmp_path: Path
) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(256), memories(30))
    minilm = resolve_embedder("sentence-transformers/all-MiniLM-L6-v2", 384, models_dir=MODELS_DIR)
    with base_schema.connect() as conn:
        stage(conn, minilm)
    script = run_tool("alembic", "upgrade", "0001:0002", "--sql", url=None).stdout
    (tmp_path / "change.sql").write_text(script)
    before = snapshot(base_schema)
    info = postgresql.info
    name = f"psql_{uuid.uuid4().hex[:6]}"
    command = [str(PSQL), "-X", "-a", "-v", "ON_ERROR_STOP=1", "-h", info.host, "-p", str(info.port), "-U", info.user,
               "-d", info.dbname, "-f", str(tmp_path / "change.sql")]  # fmt: skip
    with base_schema.connect() as holder:
        # The script blocks on the registry, after it locked the store and passed its guard.
        holder.execute(sa.text("LOCK TABLE embedding_model IN ACCESS EXCLUSIVE MODE"))
        env = {**os.environ, "PGAPPNAME": name}
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as psql:
            assert psql.stdout is not None
            read_until(psql.stdout, "ALTER TABLE embedding_model")
            time.sleep(0.2)  # the statement is sent and waiting
            psql.send_signal(signal.SIGKILL)
        holder.rollback()
    started = time.monotonic()
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
    while True:
        with base_schema.connect() as conn:
            if not conn.execute(query, {"name": name}).scalar_one():
                break
        assert time.monotonic() - started < LET_GO_SECS
        time.sleep(0.05)
    assert snapshot(base_schema) == before
    with base_schema.connect() as conn:
        assert registry_of(conn).signature == HashEmbedder(256).signature()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    with base_schema.connect() as conn:
        assert registry_of(conn).signature == minilm.signature()
