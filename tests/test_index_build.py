"""Production settings around the index build, on real servers configured like production."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import CountingEmbedder, memories, seed_store, set_for_database
from vestige_embed import HashEmbedder, ReembedPlan, Target, register_target, run_reembed
from vestige_embed.embedders.base import Matrix
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import KeyType, Statements

ROOT = Path(__file__).resolve().parent.parent
#: A server whose /dev/shm holds 16 MB, like a container's default 64 MB does for a big graph.
_SERVE = """
import json, sys
from pathlib import Path
from vestige_embed.settings.embedded import start_server
server = start_server(Path(sys.argv[1]))
info = server.get_postmaster_info()
print(json.dumps({"host": str(info.socket_dir), "port": int(info.port)}), flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def small_shm_url() -> Iterator[str]:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to give the server a small /dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="vestige-test-shm-"))
    script = 'mount -t tmpfs -o size=16m tmpfs /dev/shm && exec "$0" -c "$1" "$2"'
    proc = subprocess.Popen(
        ["unshare", "-m", "sh", "-c", script, sys.executable, _SERVE, str(folder / "pgdata")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    if not line:
        pytest.skip(f"could not start a server with a small /dev/shm: {proc.stderr.read() if proc.stderr else ''}")
    info = json.loads(line)
    url = sa.engine.URL.create(
        "postgresql+psycopg",
        username="postgres",
        database="postgres",
        query={"host": info["host"], "port": str(info["port"])},
    )
    yield url.render_as_string(hide_password=False)
    proc.stdin.close()
    proc.wait(timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_a_parallel_build_short_of_shared_memory_is_built_again_without_workers(
    small_shm_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = sa.create_engine(small_shm_url, poolclass=sa.pool.NullPool)
    target = Target(table="shm_docs")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
        conn.execute(sa.text("DROP TABLE IF EXISTS shm_docs"))
        conn.execute(sa.text("CREATE TABLE shm_docs (id bigint PRIMARY KEY, content text, embedding vector(256))"))
        rows = memories(8000)
        conn.execute(
            sa.text("INSERT INTO shm_docs SELECT i, c FROM unnest(CAST(:c AS text[])) WITH ORDINALITY AS t(c, i)"),
            {"c": rows},
        )
        st = Statements(target.with_key_type(KeyType.BIGINT))
        VectorWriter(conn, st, "embedding")(list(range(1, len(rows) + 1)), HashEmbedder(256).embed_batch(rows))
        register_target(conn, target, HashEmbedder(256).signature())
    plan = ReembedPlan(max_parallel_maintenance_workers=2, maintenance_work_mem_mb=256)
    with engine.begin() as conn:
        conn.execute(sa.text("SET min_parallel_table_scan_size = 0"))
        report = run_reembed(conn, HashEmbedder(384), plan, target=target)
    assert report.rows_updated == 8000
    assert "ran out of shared memory" in caplog.text
    with engine.connect() as conn:
        valid = conn.execute(
            sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:i)"), {"i": target.index}
        )
        assert valid.scalar() is True
    engine.dispose()


@pytest.mark.slow
def test_a_statement_timeout_shorter_than_the_rewrite_does_not_stop_it(base_schema: sa.Engine, db_url: str) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(64), memories(6000))
        set_for_database(conn, "statement_timeout", "150ms")
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "150ms"
        report = run_reembed(conn, HashEmbedder(1024), ReembedPlan(batch_size=2000))
    assert report.rows_updated == 6000
    assert report.duration_secs + report.index_rebuild_secs > 0.15
    engine.dispose()


@pytest.mark.parametrize("batched", [False, True], ids=["atomic", "batched"])
@pytest.mark.slow
def test_an_idle_in_transaction_timeout_shorter_than_an_embedder_call_does_not_stop_the_run(
    base_schema: sa.Engine, db_url: str, batched: bool
) -> None:
    class Slow(CountingEmbedder):
        def embed_batch(self, texts: Sequence[str]) -> Matrix:
            time.sleep(0.4)
            return super().embed_batch(texts)

    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(64), memories(30))
        set_for_database(conn, "idle_in_transaction_session_timeout", "150ms")
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        report = run_reembed(conn, Slow(HashEmbedder(32)), ReembedPlan(batch_size=10, commit_batches=batched))
        conn.commit()
    engine.dispose()
    assert report.rows_updated == 30
