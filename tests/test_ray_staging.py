"""Staging on a local Ray cluster: the single-machine semantics, spread over actors."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from tests.conftest import MODELS_DIR
from tests.helpers import seed_store
from vestige_embed import HashEmbedder, resolve_embedder, stage
from vestige_embed.errors import StagingError
from vestige_embed.run.distributed import RayOptions, key_ranges, stage_on_ray
from vestige_embed.store import catalog
from vestige_embed.target import DEFAULT_TARGET, Statements, Target

ray = pytest.importorskip("ray", reason="staging on Ray needs the ray extra: pip install 'vestige-embed[ray]'")
pytestmark = pytest.mark.slow

OLD, NEW = HashEmbedder(256), HashEmbedder(128)
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Repeated contents: each distinct one is embedded once, on whichever worker meets it.
TEXTS = [f"memory {i % 170} about pgvector, HNSW and Ray" for i in range(600)]


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[None]:
    """One local Ray cluster of 2 CPUs for the module; workers find the offline models as the driver does."""
    previous = os.environ.get("VESTIGE_MODELS_DIR")
    os.environ["VESTIGE_MODELS_DIR"] = str(MODELS_DIR)  # inherited by the cluster's workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if previous is None:
        del os.environ["VESTIGE_MODELS_DIR"]
    else:
        os.environ["VESTIGE_MODELS_DIR"] = previous


@pytest.fixture
def store(base_schema: sa.Engine) -> sa.Engine:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, TEXTS)
    return base_schema


def staged_vectors(engine: sa.Engine) -> dict[Any, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT row_key, staged_vector::text FROM knowledge_nodes_embedding_staging"))
        return {r[0]: r[1] for r in rows}


def test_ranges_cut_the_keys_into_parts_that_cover_every_row_once(store: sa.Engine) -> None:
    with store.connect() as conn:
        st = Statements(catalog.resolve_target(conn, DEFAULT_TARGET))
        ranges = key_ranges(conn, st, len(TEXTS), 7)
        counts = [conn.execute(st.count_rows(st.key_in_range(lo, hi))).scalar_one() for lo, hi in ranges]
    assert len(ranges) == 7 and ranges[0][0] is None and ranges[-1][1] is None
    assert sum(counts) == len(TEXTS) and min(counts) > 0


def test_ray_staging_stages_exactly_the_vectors_single_process_staging_does(
    local_cluster: None, store: sa.Engine, db_url: str
) -> None:
    options = RayOptions(workers=2, rows_per_range=100)
    with store.connect() as conn:
        report = stage_on_ray(conn, db_url, NEW, options, target=DEFAULT_TARGET, batch_size=32)
    assert report.rows_staged == len(TEXTS)
    on_ray = staged_vectors(store)
    with store.begin() as conn:
        conn.execute(sa.text("DROP TABLE knowledge_nodes_embedding_staging"))
    with store.connect() as conn:
        stage(conn, NEW, batch_size=32)
    assert on_ray == staged_vectors(store)


def test_ray_staging_with_minilm_matches_single_process(local_cluster: None, store: sa.Engine, db_url: str) -> None:
    minilm = resolve_embedder(MINILM, 384, models_dir=MODELS_DIR)
    with store.connect() as conn:
        stage_on_ray(conn, db_url, minilm, RayOptions(workers=1, rows_per_range=300), target=DEFAULT_TARGET)
    on_ray = staged_vectors(store)
    with store.begin() as conn:
        conn.execute(sa.text("DROP TABLE knowledge_nodes_embedding_staging"))
    with store.connect() as conn:
        stage(conn, minilm)
    single = staged_vectors(store)
    assert on_ray.keys() == single.keys()
    for key, vector in single.items():
        np.testing.assert_allclose(np.fromstring(on_ray[key][1:-1], sep=","), np.fromstring(vector[1:-1], sep=","))


def test_a_rerun_stages_nothing_more(local_cluster: None, store: sa.Engine, db_url: str) -> None:
    options = RayOptions(workers=2, rows_per_range=100)
    with store.connect() as conn:
        stage_on_ray(conn, db_url, NEW, options, target=DEFAULT_TARGET)
        again = stage_on_ray(conn, db_url, NEW, options, target=DEFAULT_TARGET)
    assert (again.rows_staged, again.rows_already_fresh) == (0, len(TEXTS))


def test_a_worker_whose_model_files_differ_is_refused(
    local_cluster: None, store: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    other = tmp_path / "models" / "sentence-transformers--all-MiniLM-L6-v2"
    other.mkdir(parents=True)
    for file in (MODELS_DIR / "sentence-transformers--all-MiniLM-L6-v2").iterdir():
        (other / file.name).symlink_to(file) if file.name == "model.onnx" else shutil.copyfile(file, other / file.name)
    with (other / "tokenizer_config.json").open("a") as f:
        f.write("\n")
    minilm = resolve_embedder(MINILM, 384, models_dir=MODELS_DIR)
    options = RayOptions(workers=1, worker_env=(("VESTIGE_MODELS_DIR", str(tmp_path / "models")),))
    with pytest.raises(StagingError, match="is not the driver's"), store.connect() as conn:
        stage_on_ray(conn, db_url, minilm, options, target=DEFAULT_TARGET)


def test_a_job_that_cannot_make_progress_is_stopped_by_the_watchdog(
    local_cluster: None, store: sa.Engine, db_url: str
) -> None:
    options = RayOptions(workers=1, cpus_per_worker=3, stall_secs=8)  # more CPUs than the cluster has
    with pytest.raises(StagingError, match="no row was staged for 8 s"), store.connect() as conn:
        stage_on_ray(conn, db_url, NEW, options, target=DEFAULT_TARGET)


def test_ray_staging_of_a_bigint_keyed_table(local_cluster: None, engine: sa.Engine, db_url: str) -> None:
    notes = Target(table="notes", key="note_id", content="body", embedding="emb")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE notes (note_id bigint PRIMARY KEY, body text, emb vector(256))"))
        conn.execute(sa.text("INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 500) g"))
    with engine.connect() as conn:
        report = stage_on_ray(conn, db_url, NEW, RayOptions(workers=2, rows_per_range=60), target=notes)
    assert report.rows_staged == 500


DISTINCT = [f"note {i}: the {i % 7}th way to keep memories in PostgreSQL with pgvector and HNSW" for i in range(1200)]


@pytest.fixture
def big_store(base_schema: sa.Engine) -> sa.Engine:
    """Enough distinct texts for MiniLM to take a while on one worker."""
    with base_schema.begin() as conn:
        seed_store(conn, OLD, DISTINCT)
    return base_schema


def staged_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        if conn.execute(sa.text("SELECT to_regclass('knowledge_nodes_embedding_staging')")).scalar() is None:
            return 0
        return int(conn.execute(sa.text("SELECT count(*) FROM knowledge_nodes_embedding_staging")).scalar_one())


def rows_rewritten(engine: sa.Engine) -> int:
    """Staged rows written a second time (the upsert's updates), by the server's statistics."""
    time.sleep(1.5)  # backends publish their counts within a second
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'knowledge_nodes_embedding_staging'")
            ).scalar_one()
        )


def wait_for(condition: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def actor_processes() -> list[int]:
    """Pids of the embedding actors (Ray titles each worker process with its actor's class)."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and b"RangeStager" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
    return found


def stage_command(db_url: str) -> list[str]:
    """`vestige migrate stage` on this module's cluster, as an operator joins a running one."""
    from tests.cli_helpers import BIN

    address = ray.get_runtime_context().gcs_address
    return [str(BIN / "vestige"), "migrate", "stage", "--model", MINILM, "--postgres-url", db_url,
            "--ray-address", address, "--batch-size", "32"]  # fmt: skip


def test_an_actor_killed_mid_run_is_restarted_and_every_row_is_staged_once(
    local_cluster: None, big_store: sa.Engine, db_url: str
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    driver = subprocess.Popen(stage_command(db_url), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: staged_count(big_store) > 0)
    (actor,) = actor_processes()
    os.kill(actor, signal.SIGKILL)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert staged_count(big_store) == len(DISTINCT)
    assert rows_rewritten(big_store) == 0


def test_a_killed_driver_is_resumed_by_the_same_command_staging_only_what_is_missing(
    local_cluster: None, big_store: sa.Engine, db_url: str
) -> None:
    command = stage_command(db_url)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: staged_count(big_store) > 0)
    first.kill()
    first.wait()
    time.sleep(3)  # the dead driver's actors go with it
    before = staged_count(big_store)
    assert 0 < before < len(DISTINCT)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    found = dict(re.findall(r"(rows_staged|rows_already_fresh) (\d+)", second.stdout))
    assert int(found["rows_already_fresh"]) == before
    assert int(found["rows_staged"]) == len(DISTINCT) - before
    assert staged_count(big_store) == len(DISTINCT)
    assert rows_rewritten(big_store) == 0


def test_a_job_that_loses_rows_fails_loudly(
    local_cluster: None, store: sa.Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vestige_embed.run import distributed

    cut = distributed.key_ranges
    monkeypatch.setattr(distributed, "key_ranges", lambda conn, st, rows, parts: cut(conn, st, rows, parts)[:-1])
    lost = pytest.raises(StagingError, match=r"rows have no staged vector although every range reported done")
    with lost, store.connect() as conn:
        stage_on_ray(conn, db_url, NEW, RayOptions(workers=2, rows_per_range=100), target=DEFAULT_TARGET)
