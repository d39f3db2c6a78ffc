"""Stage, then swap: staging while the store is live, resuming, and the offline script."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_tool
from tests.conftest import HEAD, MODELS_DIR
from tests.helpers import (
    STORE,
    CountingEmbedder,
    autocommit_block,
    column_typmod,
    index_definition,
    index_validity,
    kill_mid_pass,
    memories,
    registry_of,
    run_psql,
    seed_store,
    staged_rows,
    stored_vectors,
    upgrade_to,
)
from vestige_embed import HashEmbedder, ReembedPlan, resolve_embedder, run_reembed, stage, stage_written
from vestige_embed.target import DEFAULT_TARGET, ModelState

OLD, NEW = HashEmbedder(256), HashEmbedder(128)
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
ROWS = 40


def contents_and_vectors(engine: sa.Engine) -> tuple[dict[uuid.UUID, str], dict[uuid.UUID, np.ndarray | None]]:
    with engine.connect() as conn:
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        return contents, stored_vectors(conn)


def assert_every_row_matches_its_content(engine: sa.Engine, embedder: HashEmbedder) -> None:
    contents, vectors = contents_and_vectors(engine)
    for row_id, text in contents.items():
        np.testing.assert_allclose(vectors[row_id], embedder.embed_batch([text])[0], rtol=1e-6)


@pytest.fixture
def store(base_schema: sa.Engine) -> sa.Engine:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))
    return base_schema


def test_online_reembed_uses_fresh_staged_vectors_and_embeds_only_changed_rows(store: sa.Engine) -> None:
    with store.connect() as conn:
        report = stage(conn, NEW, batch_size=16)
    assert (report.rows_staged, report.rows_already_fresh) == (ROWS, 0)
    with store.begin() as conn:
        conn.execute(
            sa.text("UPDATE knowledge_nodes SET content = content || ' (edited)' WHERE content LIKE '%number 7 %'")
        )
    counting = CountingEmbedder(NEW)
    with store.begin() as conn:
        result = run_reembed(conn, counting, ReembedPlan())
    assert result.rows_updated == ROWS
    assert result.rows_from_staging == ROWS - 1
    assert counting.texts == 1
    assert_every_row_matches_its_content(store, NEW)
    with store.connect() as conn:
        assert staged_rows(conn) == 0
        assert column_typmod(conn) == 128


def test_staging_while_another_connection_writes_then_apply(store: sa.Engine) -> None:
    slow = _GatedEmbedder(NEW)
    errors: list[BaseException] = []

    def run_stage() -> None:
        try:
            with store.connect() as conn:
                stage(conn, slow, batch_size=8)
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    worker = threading.Thread(target=run_stage)
    worker.start()
    slow.first_batch.wait(timeout=30)
    with store.begin() as conn:  # the application keeps writing while staging runs
        conn.execute(
            STORE.table.insert(), [{"id": uuid.uuid4(), "content": f"new memory {i} about staging"} for i in range(5)]
        )
        conn.execute(
            sa.text("UPDATE knowledge_nodes SET content = 'rewritten: ' || content WHERE content LIKE '%number 3%'")
        )
        conn.execute(sa.text("DELETE FROM knowledge_nodes WHERE content LIKE '%number 2%'"))
    slow.release.set()
    worker.join(timeout=60)
    assert not errors, errors
    with store.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan())
    assert 0 < report.rows_from_staging < report.rows_updated
    assert_every_row_matches_its_content(store, NEW)


def test_staging_killed_halfway_resumes_with_the_rest(store: sa.Engine, db_url: str) -> None:
    kill_mid_pass(db_url, "stage")  # the worker stages for HashEmbedder(128), batches of 8
    with store.connect() as conn:
        already = staged_rows(conn)
    assert already >= 3 * 8
    counting = CountingEmbedder(NEW)
    with store.connect() as conn:
        report = stage(conn, counting, batch_size=8)
    assert report.rows_already_fresh == already
    assert counting.texts == ROWS - already
    assert report.rows_staged == ROWS - already


def test_staging_for_another_model_is_replaced(store: sa.Engine) -> None:
    with store.connect() as conn:
        stage(conn, HashEmbedder(64), batch_size=16)
    counting = CountingEmbedder(NEW)
    with store.connect() as conn:
        report = stage(conn, counting, batch_size=16)
        models = conn.execute(sa.text("SELECT DISTINCT model_key FROM knowledge_nodes_embedding_staging")).scalars()
        assert list(models) == [NEW.signature().key]
    assert (report.rows_staged, counting.texts) == (ROWS, ROWS)


def test_a_staging_table_of_vestige_embed_0_2_is_replaced_by_the_next_stage(store: sa.Engine) -> None:
    with store.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE UNLOGGED TABLE knowledge_nodes_embedding_staging (row_key uuid PRIMARY KEY, "
                "staged_vector vector NOT NULL, content_sha256 bytea NOT NULL, model_name text NOT NULL, "
                "dimension integer NOT NULL, model_hash text NOT NULL)"
            )
        )
    with store.connect() as conn:
        assert stage(conn, NEW, batch_size=16).rows_staged == ROWS
        columns = conn.execute(
            sa.text("SELECT attname FROM pg_attribute WHERE attrelid = 'knowledge_nodes_embedding_staging'::regclass")
        ).scalars()
        assert "model_key" in set(columns) and "model_hash" not in set(columns)


def test_a_staged_row_stores_the_model_as_eight_bytes_not_its_signature(store: sa.Engine) -> None:
    with store.connect() as conn:
        stage(conn, NEW, batch_size=16)
        kinds = conn.execute(
            sa.text(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'knowledge_nodes_embedding_staging'::regclass AND attnum > 0"
            )
        ).all()
    assert dict(kinds) == {
        "row_key": "uuid", "staged_vector": "vector", "content_sha256": "bytea", "model_key": "bigint",
    }  # fmt: skip


def test_the_staging_table_is_unlogged(store: sa.Engine) -> None:
    """Staged vectors are a recomputable cache: UNLOGGED, so staging adds no WAL (and no
    fsyncs) to the application's commits."""
    with store.connect() as conn:
        stage(conn, NEW, batch_size=16)
        persistence = conn.execute(
            sa.text("SELECT relpersistence FROM pg_class WHERE oid = 'knowledge_nodes_embedding_staging'::regclass")
        ).scalar_one()
    assert persistence == "u"


def test_an_emptied_staging_table_is_staged_again_in_full(store: sa.Engine) -> None:
    """What a crash leaves of an UNLOGGED table (nothing) only costs a re-stage: every row
    is stale again and the change embeds it; nothing is applied from the lost vectors."""
    with store.connect() as conn:
        stage(conn, NEW, batch_size=16)
    with store.begin() as conn:  # what crash recovery does to an unlogged table
        conn.execute(sa.text("TRUNCATE knowledge_nodes_embedding_staging"))
    counting = CountingEmbedder(NEW)
    with store.connect() as conn:
        report = stage(conn, counting, batch_size=16)
    assert (report.rows_staged, report.rows_already_fresh, counting.texts) == (ROWS, 0, ROWS)
    with store.begin() as conn:
        run_reembed(conn, NEW, ReembedPlan())
    assert_every_row_matches_its_content(store, NEW)


def test_stage_written_reads_the_catalog_once_per_connection(store: sa.Engine) -> None:
    """Applications stage in every write transaction: after the first, one statement each."""
    with store.connect() as conn:
        stage(conn, NEW, batch_size=16)
        keys = list(conn.execute(sa.text("SELECT id FROM knowledge_nodes ORDER BY id LIMIT 2")).scalars())
        statements: list[str] = []
        sa.event.listen(conn, "before_cursor_execute", lambda *args: statements.append(args[2]))
        for _ in range(2):
            statements.clear()
            stage_written(conn, DEFAULT_TARGET, NEW.signature(), keys, NEW.embed_batch(["a", "b"]))
            conn.commit()
    assert len(statements) == 1, statements
    assert statements[0].startswith("INSERT INTO knowledge_nodes_embedding_staging")


# The offline script (`alembic upgrade 0001:0002 --sql`) run with psql.


def offline_script(tmp_path: Path, revisions: str = "0001:0002") -> Path:
    result = run_tool("alembic", "upgrade", revisions, "--sql", url=None)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "change.sql"
    path.write_text(result.stdout)
    return path


def snapshot(engine: sa.Engine) -> dict[str, object]:
    with engine.connect() as conn:
        registry = registry_of(conn)
        return {
            "vectors": stored_vectors(conn),
            "typmod": column_typmod(conn),
            "index": index_definition(conn),
            "valid": index_validity(conn),
            "registry": (registry.signature, registry.state),
            "revision": conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar(),
        }


@pytest.fixture
def twin_url(postgresql: psycopg.Connection) -> Iterator[str]:  # type: ignore[type-arg]
    """A second database on the same server, for the online path to compare against."""
    name = f"{postgresql.info.dbname}_online"
    info = postgresql.info
    with psycopg.connect(host=info.host, port=info.port, user=info.user, dbname="postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = sa.engine.URL.create(
        "postgresql+psycopg", username=info.user, database=name, query={"host": info.host, "port": str(info.port)}
    )
    yield url.render_as_string(hide_password=False)
    with psycopg.connect(host=info.host, port=info.port, user=info.user, dbname="postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def at_base_with_rows(url: str, ids: list[uuid.UUID]) -> sa.Engine:
    upgrade_to(url, "0001")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        seed_store(conn, OLD, memories(len(ids)), ids=ids)
    return engine


@pytest.mark.slow
def test_offline_script_on_staged_database_equals_online_path(
    postgresql: psycopg.Connection,
    db_url: str,
    twin_url: str,
    tmp_path: Path,  # type: ignore[type-arg]
) -> None:
    ids = [uuid.uuid4() for _ in range(ROWS)]
    offline, online = at_base_with_rows(db_url, ids), at_base_with_rows(twin_url, ids)
    staged = run_tool("vestige", "migrate", "stage", "--model", MINILM, url=db_url)
    assert staged.returncode == 0, staged.stderr
    result = run_psql(postgresql, offline_script(tmp_path))
    assert result.returncode == 0, result.stderr
    assert run_tool("alembic", "upgrade", "0002", url=twin_url).returncode == 0

    a, b = snapshot(offline), snapshot(online)
    assert a["vectors"].keys() == b["vectors"].keys()  # type: ignore[attr-defined]
    for row_id in ids:
        np.testing.assert_array_equal(a["vectors"][row_id], b["vectors"][row_id])  # type: ignore[index]
    for key in ("typmod", "index", "valid", "registry", "revision"):
        assert a[key] == b[key], key
    assert a["registry"] == (resolve_embedder(MINILM, models_dir=MODELS_DIR).signature(), ModelState.READY)
    with offline.connect() as conn:
        assert staged_rows(conn) == 0
    offline.dispose()
    online.dispose()


def test_offline_script_stops_at_the_guard_when_nothing_is_staged(
    postgresql: psycopg.Connection,
    store: sa.Engine,
    tmp_path: Path,  # type: ignore[type-arg]
) -> None:
    before = snapshot(store)
    result = run_psql(postgresql, offline_script(tmp_path))
    assert result.returncode == 3
    assert "does not exist: nothing is staged" in result.stderr
    assert f"vestige migrate stage --model {MINILM} --dimension 384" in result.stderr
    _assert_unchanged(before, snapshot(store))


@pytest.mark.slow
def test_a_script_from_an_empty_database_stops_at_the_guard_and_the_written_way_out_finishes_it(
    postgresql: psycopg.Connection,  # type: ignore[type-arg]
    db_url: str,
    engine: sa.Engine,
    tmp_path: Path,
) -> None:
    result = run_psql(postgresql, offline_script(tmp_path, "head"))
    assert result.returncode == 3
    assert "write the script again from the database's revision" in result.stderr
    with engine.connect() as conn:
        revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert revision == "0001"
    assert run_tool("vestige", "migrate", "stage", "--model", MINILM, url=db_url).returncode == 0
    result = run_psql(postgresql, offline_script(tmp_path, f"{revision}:head"))
    assert result.returncode == 0, result.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        assert registry_of(conn).signature == resolve_embedder(MINILM, models_dir=MODELS_DIR).signature()


@pytest.mark.parametrize(
    "change",
    [
        "INSERT INTO knowledge_nodes (content) VALUES ('added after staging')",
        "UPDATE knowledge_nodes SET content = 'edited' WHERE content LIKE '%number 9 %'",
    ],
)
@pytest.mark.slow
def test_offline_script_stops_at_the_guard_when_staging_is_stale(
    postgresql: psycopg.Connection,
    store: sa.Engine,
    db_url: str,
    tmp_path: Path,
    change: str,  # type: ignore[type-arg]
) -> None:
    assert run_tool("vestige", "migrate", "stage", "--model", MINILM, url=db_url).returncode == 0
    with store.begin() as conn:
        conn.execute(sa.text(change))
    before = snapshot(store)
    result = run_psql(postgresql, offline_script(tmp_path))
    assert result.returncode == 3
    assert "1 rows have no fresh staged vector" in result.stderr
    _assert_unchanged(before, snapshot(store))


def test_offline_downgrade_script_guards_for_the_previous_model(tmp_path: Path) -> None:
    result = run_tool("alembic", "downgrade", "0002:0001", "--sql", url=None)
    assert result.returncode == 0, result.stderr
    assert "vestige migrate stage --model vestige/hash-256 --dimension 256" in result.stdout
    assert "ALTER TABLE knowledge_nodes ALTER COLUMN embedding TYPE VECTOR(256)" in result.stdout


def _assert_unchanged(before: dict[str, object], after: dict[str, object]) -> None:
    for key in ("typmod", "index", "valid", "registry", "revision"):
        assert after[key] == before[key], key
    for row_id, vector in before["vectors"].items():  # type: ignore[attr-defined]
        np.testing.assert_array_equal(after["vectors"][row_id], vector)  # type: ignore[index]


class _GatedEmbedder(CountingEmbedder):
    """Embeds the first batch, then waits until the test has written to the store."""

    def __init__(self, inner: HashEmbedder) -> None:
        super().__init__(inner)
        self.first_batch = threading.Event()
        self.release = threading.Event()

    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        out = super().embed_batch(texts)
        if self.calls == 1:
            self.first_batch.set()
            self.release.wait(timeout=30)
        return out


@pytest.mark.parametrize("mode", ["batched", "atomic"])
def test_staged_swap_with_prebuilt_index_has_a_short_window(store: sa.Engine, mode: str) -> None:
    with store.connect() as conn:
        stage(conn, NEW, batch_size=16)
    with store.begin() as conn:
        conn.execute(
            sa.text("UPDATE knowledge_nodes SET content = content || ' (edited)' WHERE content LIKE '%number 5 %'")
        )
        conn.execute(STORE.table.insert().values(id=uuid.uuid4(), content="added after staging"))
    counting = CountingEmbedder(NEW)
    plan = ReembedPlan(concurrent_index=True, commit_batches=mode == "batched")
    with store.connect() as conn:
        if mode == "batched":
            report = run_reembed(conn, counting, plan)
        else:
            report = run_reembed(conn, counting, plan, autocommit_block=autocommit_block(conn))
            conn.commit()
    assert counting.texts == 2  # the run stages the two rows changed since `stage`, then swaps
    assert report.rows_from_staging == ROWS + 1
    assert report.rows_updated == ROWS + 1
    assert report.window_secs < 1.0
    assert_every_row_matches_its_content(store, NEW)
    with store.connect() as conn:
        assert column_typmod(conn) == 128
        assert index_validity(conn) is True
        assert "(embedding vector_cosine_ops)" in (index_definition(conn) or "")
        assert staged_rows(conn) == 0
        assert registry_of(conn).signature == NEW.signature()
        columns = conn.execute(sa.text("SELECT attname FROM pg_attribute WHERE attrelid = 'knowledge_nodes'::regclass"))
        assert "embedding_next" not in columns.scalars().all()


def test_vectors_staged_for_another_model_survive_a_change(store: sa.Engine) -> None:
    with store.connect() as conn:
        stage(conn, HashEmbedder(64), batch_size=16)
    with store.begin() as conn:
        run_reembed(conn, NEW, ReembedPlan())
    with store.connect() as conn:
        staged = staged_rows(conn)
    assert staged == ROWS


@pytest.mark.slow
def test_offline_script_rewrites_the_table_on_a_same_size_change_so_the_index_holds_only_new_vectors(
    postgresql: psycopg.Connection,  # type: ignore[type-arg]
    base_schema: sa.Engine,
    db_url: str,
    tmp_path: Path,
) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(384), memories(ROWS))  # MiniLM is 384-d too
        before = conn.execute(sa.text("SELECT pg_relation_filenode('knowledge_nodes')")).scalar()
    assert run_tool("vestige", "migrate", "stage", "--model", MINILM, url=db_url).returncode == 0
    result = run_psql(postgresql, offline_script(tmp_path))
    assert result.returncode == 0, result.stderr
    with base_schema.connect() as conn:
        after = conn.execute(sa.text("SELECT pg_relation_filenode('knowledge_nodes')")).scalar()
        assert registry_of(conn).signature == resolve_embedder(MINILM, models_dir=MODELS_DIR).signature()
        assert column_typmod(conn) == 384
        assert index_validity(conn) is True
    assert after != before, "the table was not rewritten: the index build also took the old versions"
    size = sa.text("SELECT pg_relation_size('idx_knowledge_nodes_embedding_hnsw')")
    with base_schema.connect() as conn:
        built = conn.execute(size).scalar_one()
        conn.execute(sa.text("REINDEX INDEX idx_knowledge_nodes_embedding_hnsw"))
        assert built <= 1.2 * conn.execute(size).scalar_one()
        conn.commit()
    assert_every_row_matches_its_content(base_schema, resolve_embedder(MINILM, models_dir=MODELS_DIR))  # type: ignore[arg-type]


def test_after_the_staging_table_is_dropped_writers_have_nothing_to_stage(store: sa.Engine) -> None:
    from vestige_embed import model_for_write, pending_model
    from vestige_embed.run.staging import drop_staging

    with store.connect() as conn:
        stage(conn, NEW, batch_size=16)
    with store.begin() as conn:
        model_for_write(conn)
        assert pending_model(conn) == NEW.signature()
    with store.begin() as conn:
        drop_staging(conn)
    with store.begin() as conn:
        model_for_write(conn)
        assert pending_model(conn) is None  # stage_written would fail on the missing table
