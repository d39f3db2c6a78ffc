"""Never mixed, with the application still writing: a real second process writes during
every mode, and the data that results is judged row by row.

The writer (tests/writer_worker.py) either follows the application contract (inserts and
edits with vectors of the model `model_for_write` returns) or edits content and clears
the vector without it. Afterwards every row must hold the vector of its current content
in the new model's space (or no vector, where the plain writer cleared it), and every
write the writer made must be there.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_tool
from tests.conftest import HEAD, ROOT
from tests.helpers import (
    CountingEmbedder,
    OtherModel64,
    autocommit_block,
    memories,
    registry_of,
    run_psql,
    seed_store,
    stored_vectors,
)
from tests.writer_worker import ReversedHash
from vestige_embed import HashEmbedder, ReembedPlan, run_reembed, stage
from vestige_embed.embedders.base import Matrix
from vestige_embed.errors import ReembedError
from vestige_embed.target import ModelState

OLD, NEW = HashEmbedder(64), HashEmbedder(128)
ROWS = 40
WRITER = Path(__file__).with_name("writer_worker.py")


class Slow(CountingEmbedder):
    """The new model, slow enough that the writer gets many writes in during a run."""

    def __init__(self, inner: HashEmbedder, seconds: float = 0.08) -> None:
        super().__init__(inner)
        self.seconds = seconds

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        time.sleep(self.seconds)
        return super().embed_batch(texts)


@pytest.fixture
def store(base_schema: sa.Engine) -> sa.Engine:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))
    return base_schema


@contextlib.contextmanager
def writer(url: str, mode: str, tmp_path: Path, engine: sa.Engine) -> Iterator[dict[str, Any]]:
    """Run the writer process for the block; its summary fills the yielded dict afterwards."""
    stop = tmp_path / f"stop-{mode}"
    env = {**os.environ, "PYTHONPATH": str(WRITER.parent.parent)}
    command = [sys.executable, str(WRITER), url, mode, str(stop)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    summary: dict[str, Any] = {}
    try:
        _wait_for_a_write(engine, proc)
        yield summary
        time.sleep(0.3)  # writes after the change, too
    finally:
        stop.touch()
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary.update(json.loads(out.strip().splitlines()[-1]))


def _wait_for_a_write(engine: sa.Engine, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT count(*) FROM knowledge_nodes WHERE content LIKE 'edited by%'")).scalar():
                return
        time.sleep(0.05)
    pytest.fail("the writer wrote nothing in 60 s")


def assert_never_mixed(
    engine: sa.Engine, summary: dict[str, Any], *, cleared_allowed: bool, new: HashEmbedder = NEW
) -> None:
    """Every row: the new model's vector of its current content (or none, if the plain
    writer cleared it); every insert and the last edit of every row are there."""
    with engine.connect() as conn:
        registry = registry_of(conn)
        contents = {str(k): v for k, v in conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all()}
        vectors = {str(k): v for k, v in stored_vectors(conn).items()}
    assert (registry.signature, registry.state) == (new.signature(), ModelState.READY)
    assert set(summary["inserted"]) <= set(contents), "writes lost"
    assert all(contents[k] == c for k, c in summary["edited"].items()), "edits lost"
    wrong = []
    for key, content in contents.items():
        vector = vectors[key]
        if vector is None:
            if not cleared_allowed:
                wrong.append((key, content, "no vector"))
            continue
        if vector.shape != (new.dimension,) or not np.allclose(vector, new.embed_batch([content])[0], atol=1e-6):
            wrong.append((key, content, "vector of another model or of older content"))
    assert not wrong, f"{len(wrong)} of {len(contents)} rows out of the new model's space: {wrong[:3]}"
    assert summary["writes"] > 0


def test_atomic_change_with_a_contract_writer_ends_all_in_the_new_space(
    store: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    with writer(db_url, "contract", tmp_path, store) as summary, store.begin() as conn:
        run_reembed(conn, Slow(NEW), ReembedPlan(batch_size=4))
    assert_never_mixed(store, summary, cleared_allowed=False)


def test_atomic_change_never_writes_the_vector_of_edited_content(store: sa.Engine, db_url: str, tmp_path: Path) -> None:
    with writer(db_url, "plain", tmp_path, store) as summary, store.begin() as conn:
        run_reembed(conn, Slow(NEW), ReembedPlan(batch_size=4))
    assert_never_mixed(store, summary, cleared_allowed=True)


@pytest.mark.parametrize("batched", [False, True], ids=["atomic", "batched"])
def test_same_size_change_keeping_the_index_locks_writers_out(
    base_schema: sa.Engine, db_url: str, tmp_path: Path, batched: bool
) -> None:
    """No DDL takes the table before the data pass here: only the run's own lock keeps the
    writer's old-model rows out."""
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(128), memories(ROWS))
    new = ReversedHash(128)
    plan = ReembedPlan(batch_size=4, drop_hnsw_first=False, commit_batches=batched)
    with writer(db_url, "contract", tmp_path, base_schema) as summary, base_schema.connect() as conn:
        run_reembed(conn, Slow(new), plan)
        conn.commit()
    assert_never_mixed(base_schema, summary, cleared_allowed=False, new=new)


def test_batched_change_with_a_contract_writer_catches_up_rows_written_meanwhile(
    store: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    with writer(db_url, "contract", tmp_path, store) as summary, store.connect() as conn:
        report = run_reembed(conn, Slow(NEW), ReembedPlan(batch_size=4, commit_batches=True))
    assert report.rows_updated > ROWS  # the writer's rows too
    assert_never_mixed(store, summary, cleared_allowed=False)


@pytest.mark.slow
@pytest.mark.parametrize("prebuild", [True, False], ids=["swap", "in_place"])
def test_batched_change_catches_up_rows_a_writer_did_not_stage(
    store: sa.Engine, db_url: str, tmp_path: Path, prebuild: bool
) -> None:
    """A writer that embeds with the registry's model but stages nothing for the change:
    its rows are embedded again under the lock, before the registry flips (the default
    staged swap, and in place with `prebuild_index=False`)."""
    plan = ReembedPlan(batch_size=4, commit_batches=True, prebuild_index=prebuild)
    with writer(db_url, "unstaged", tmp_path, store) as summary, store.connect() as conn:
        report = run_reembed(conn, Slow(NEW), plan)
    assert report.strategy == ("staged_swap" if prebuild else "in_place")
    assert_never_mixed(store, summary, cleared_allowed=False)


def test_staged_swap_with_a_contract_writer_ends_all_in_the_new_space(
    store: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    plan = ReembedPlan(batch_size=4, commit_batches=True, concurrent_index=True)
    with writer(db_url, "contract", tmp_path, store) as summary, store.connect() as conn:
        report = run_reembed(conn, Slow(NEW), plan)
    assert report.strategy == "staged_swap"
    assert_never_mixed(store, summary, cleared_allowed=False)


#: A trigger of the application's that silently skips some updates (rows 1 and 10-19).
_SKIP_SOME = (
    "CREATE FUNCTION skip_some() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.content LIKE '%number 1%' THEN RETURN NULL; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER skip_some BEFORE UPDATE ON knowledge_nodes FOR EACH ROW EXECUTE FUNCTION skip_some()",
)


@pytest.mark.parametrize("path", ["in_place", "in_place_applying_staged", "staged_swap"])
def test_a_trigger_that_skips_updates_fails_a_same_size_change_and_changes_nothing(
    base_schema: sa.Engine, path: str
) -> None:
    """The skipped rows would keep the old model's vectors, of the same size: nothing else
    (no typmod, no index) would notice them."""
    old, new = OtherModel64(), HashEmbedder(64)
    with base_schema.begin() as conn:
        seed_store(conn, old, memories(ROWS))  # type: ignore[arg-type]
    if path != "in_place":
        with base_schema.connect() as conn:
            stage(conn, new, batch_size=16)
    with base_schema.begin() as conn:
        for statement in _SKIP_SOME:
            conn.execute(sa.text(statement))
        before = stored_vectors(conn)
    skipped = r"11 of \d+ rows of knowledge_nodes were not updated"
    with pytest.raises(ReembedError, match=skipped), base_schema.connect() as conn:
        if path == "staged_swap":
            run_reembed(conn, new, ReembedPlan(concurrent_index=True), autocommit_block=autocommit_block(conn))
        else:
            run_reembed(conn, new, ReembedPlan())
        conn.commit()
    with base_schema.connect() as conn:
        assert all(np.array_equal(vector, before[key]) for key, vector in stored_vectors(conn).items())
        assert registry_of(conn).signature == old.signature()


def test_a_second_run_on_the_same_target_is_refused_at_once_naming_the_first(store: sa.Engine) -> None:
    started, release = threading.Event(), threading.Event()

    class Held(CountingEmbedder):
        def embed_batch(self, texts: Sequence[str]) -> Matrix:
            started.set()
            release.wait(timeout=30)
            return super().embed_batch(texts)

    def first() -> None:
        with store.connect() as conn:
            run_reembed(conn, Held(NEW), ReembedPlan(commit_batches=True))

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(timeout=30)
        began = time.perf_counter()
        with (
            pytest.raises(ReembedError, match=r"being changed by another vestige-embed run: pid \d+"),
            store.connect() as conn,
        ):
            run_reembed(conn, HashEmbedder(32), ReembedPlan(commit_batches=True))
        assert time.perf_counter() - began < 2.0
    finally:
        release.set()
        thread.join(timeout=60)
    with store.connect() as conn:
        assert registry_of(conn).signature == NEW.signature()


@pytest.mark.slow
def test_the_swap_builds_its_index_while_writers_write(base_schema: sa.Engine, db_url: str) -> None:
    rows = 12_000
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(rows))
    with base_schema.connect() as conn:
        stage(conn, NEW, batch_size=2000)
    wrote_during_build: list[float] = []

    def write_during_the_build() -> None:
        deadline = time.monotonic() + 60
        with base_schema.connect() as watcher:
            while time.monotonic() < deadline and not wrote_during_build:
                building = watcher.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query ILIKE 'CREATE INDEX%'"
                    )
                ).scalar()
                watcher.commit()
                if building:
                    with base_schema.begin() as conn:
                        conn.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
                        began = time.perf_counter()
                        conn.execute(
                            sa.text("INSERT INTO knowledge_nodes (content) VALUES ('written during the build')")
                        )
                    wrote_during_build.append(time.perf_counter() - began)
                time.sleep(0.005)

    thread = threading.Thread(target=write_during_the_build)
    thread.start()
    with base_schema.connect() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(batch_size=2000, commit_batches=True, concurrent_index=True))
    thread.join(timeout=60)
    assert report.strategy == "staged_swap"
    assert wrote_during_build and wrote_during_build[0] < 1.0, "a write waited for the index build"


@pytest.mark.slow
@pytest.mark.parametrize("concurrent", [False, True])
def test_the_index_build_runs_with_its_memory_setting(base_schema: sa.Engine, concurrent: bool) -> None:
    """pgvector says so when the graph outgrows maintenance_work_mem: at 1MB it must."""
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(3000))
    notices: list[str] = []
    plan = ReembedPlan(
        commit_batches=concurrent,
        concurrent_index=concurrent,
        maintenance_work_mem_mb=1,
        max_parallel_maintenance_workers=0,
    )
    with base_schema.connect() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        driver.add_notice_handler(lambda diag: notices.append(str(diag.message_primary)))
        run_reembed(conn, NEW, plan)
        conn.commit()
    assert any("no longer fits into maintenance_work_mem" in n for n in notices), notices


@pytest.mark.slow
def test_offline_script_locks_writers_out_before_its_guard(
    postgresql: psycopg.Connection[Any], store: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    """The script is held just after its guard; a row written then must not slip in."""
    minilm = "sentence-transformers/all-MiniLM-L6-v2"
    assert run_tool("vestige", "migrate", "stage", "--model", minilm, url=db_url).returncode == 0
    printed = run_tool("alembic", "upgrade", "0001:0002", "--sql", url=None)
    script = tmp_path / "change.sql"
    script.write_text(printed.stdout)
    with store.connect() as holder:
        holder.execute(sa.text("LOCK TABLE embedding_model IN ACCESS EXCLUSIVE MODE"))  # the script stops here
        psql = threading.Thread(target=lambda: results.append(run_psql(postgresql, script)))
        results: list[subprocess.CompletedProcess[str]] = []
        psql.start()
        _wait_for_lock_wait(store)
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"), store.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '300ms'"))
            conn.execute(sa.text("INSERT INTO knowledge_nodes (content) VALUES ('slipped in after the guard')"))
        holder.rollback()
    psql.join(timeout=120)
    assert results and results[0].returncode == 0, results[0].stderr if results else "psql did not finish"


@pytest.mark.slow
def test_offline_script_with_a_contract_writer_ends_all_in_the_new_space(
    postgresql: psycopg.Connection[Any], store: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    """Stage, keep writing (the writer stages its rows too), then the DBA's script."""
    with writer(db_url, "contract", tmp_path, store) as summary:
        with store.connect() as conn:
            stage(conn, NEW, batch_size=8)
        time.sleep(0.5)  # writes between staging and the script
        result = run_psql(postgresql, offline_change(tmp_path, NEW))
        assert result.returncode == 0, result.stderr
    assert_never_mixed(store, summary, cleared_allowed=False)


def offline_change(tmp_path: Path, new: HashEmbedder) -> Path:
    """The offline script of a change of the default target to `new`, printed by Alembic."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "migrations", project / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    (project / "migrations" / "versions" / "c001_change.py").write_text(
        "from alembic import op\nimport vestige_embed.alembic  # noqa: F401\n"
        f"revision = 'c001'\ndown_revision = {HEAD!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        f"def upgrade() -> None:\n    op.reembed(model={new.name!r}, dimension={new.dimension})\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    printed = run_tool("alembic", "upgrade", f"{HEAD}:c001", "--sql", url=None, cwd=project)
    assert printed.returncode == 0, printed.stderr
    script = tmp_path / "change.sql"
    script.write_text(printed.stdout)
    return script


def _wait_for_lock_wait(engine: sa.Engine) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name = 'psql'"
                )
            ).scalar()
        if waiting:
            return
        time.sleep(0.05)
    pytest.fail("the script never reached the registry")
