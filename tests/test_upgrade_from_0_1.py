"""Databases made by vestige-embed 0.1 (one registry row) upgrade to one row per target,
with nothing lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_tool
from tests.conftest import MODELS_DIR
from tests.helpers import STORE, index_definition, memories, registry_of, run_psql, stored_vectors
from vestige_embed import HashEmbedder, register_target, resolve_embedder
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import ModelState, Target

LEGACY = Path(__file__).with_name("fixtures") / "vestige_embed_0_1_at_0001.sql"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
ROWS = 20


@pytest.fixture
def legacy(postgresql: psycopg.Connection[Any], engine: sa.Engine) -> sa.Engine:
    """A 0.1 database at revision 0001, with rows on vestige/hash-256."""
    result = run_psql(postgresql, LEGACY)
    assert result.returncode == 0, result.stderr
    with engine.begin() as conn:
        ids = (
            conn.execute(
                sa.text("INSERT INTO knowledge_nodes (content) SELECT unnest(CAST(:c AS text[])) RETURNING id"),
                {"c": memories(ROWS)},
            )
            .scalars()
            .all()
        )
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        VectorWriter(conn, STORE, "embedding")(list(ids), HashEmbedder(256).embed_batch([contents[i] for i in ids]))
    return engine


def legacy_registry(conn: sa.Connection) -> tuple[Any, ...]:
    return tuple(
        conn.execute(sa.text("SELECT model_name, dimension, model_hash, state, updated_at FROM embedding_model")).one()
    )


@pytest.mark.slow
def test_a_0_1_database_at_0002_keeps_its_model_and_vectors(legacy: sa.Engine, db_url: str) -> None:
    minilm = resolve_embedder(MINILM, 384, models_dir=MODELS_DIR)
    with legacy.begin() as conn:  # what 0.1's revision 0002 left behind, with vectors staged by 0.1
        conn.execute(sa.text("DROP INDEX idx_knowledge_nodes_embedding_hnsw"))
        conn.execute(sa.text("ALTER TABLE knowledge_nodes ALTER COLUMN embedding TYPE vector(384) USING NULL"))
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        VectorWriter(conn, STORE, "embedding")(list(contents), minilm.embed_batch(list(contents.values())))
        conn.execute(STORE.create_index())
        sig = minilm.signature()
        conn.execute(
            sa.text("UPDATE embedding_model SET model_name = :n, dimension = :d, model_hash = :h"),
            {"n": sig.name, "d": sig.dimension, "h": sig.hash},
        )
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0002'"))
        conn.execute(sa.text("CREATE TABLE knowledge_nodes_reembed_staging (id uuid PRIMARY KEY)"))
        before = (legacy_registry(conn), stored_vectors(conn), index_definition(conn))

    up = run_tool("alembic", "upgrade", "head", url=db_url)
    assert up.returncode == 0, up.stderr
    with legacy.connect() as conn:
        row = registry_of(conn)
        after_vectors, after_index = stored_vectors(conn), index_definition(conn)
        assert conn.execute(sa.text("SELECT to_regclass('knowledge_nodes_reembed_staging')")).scalar() is None
    name, dimension, model_hash, state, updated_at = before[0]
    assert (row.signature.name, row.signature.dimension, row.signature.hash) == (name, dimension, model_hash)
    assert (row.state.value, row.updated_at) == (state, updated_at)
    assert after_index == before[2]
    assert after_vectors.keys() == before[1].keys()
    assert all(np.array_equal(after_vectors[k], before[1][k]) for k in before[1])

    status = run_tool("vestige", "migrate", "status", "--json", url=db_url)
    assert status.returncode == 0, status.stderr
    assert '"state": "ready"' in status.stdout


def test_a_0_1_database_at_0002_takes_a_second_target_after_the_upgrade(legacy: sa.Engine, db_url: str) -> None:
    with legacy.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0002'"))
    assert run_tool("alembic", "upgrade", "head", url=db_url).returncode == 0
    with legacy.begin() as conn:
        conn.execute(sa.text("CREATE TABLE chunks (id bigint PRIMARY KEY, content text, embedding vector(8))"))
        register_target(conn, Target(table="chunks"), HashEmbedder(8).signature())
    with legacy.connect() as conn:
        assert registry_of(conn, Target(table="chunks")).signature == HashEmbedder(8).signature()
        assert registry_of(conn).signature == HashEmbedder(256).signature()


@pytest.mark.slow
def test_a_0_1_database_at_0001_upgrades_through_the_model_change(legacy: sa.Engine, db_url: str) -> None:
    up = run_tool("alembic", "upgrade", "head", url=db_url)
    assert up.returncode == 0, up.stderr
    minilm = resolve_embedder(MINILM, 384, models_dir=MODELS_DIR)
    with legacy.connect() as conn:
        row = registry_of(conn)
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        vectors = stored_vectors(conn)
    assert (row.signature, row.state) == (minilm.signature(), ModelState.READY)
    assert len(vectors) == ROWS
    keys = list(contents)
    expected = minilm.embed_batch([contents[k] for k in keys])
    np.testing.assert_allclose(np.vstack([vectors[k] for k in keys]), expected, atol=2e-5)
