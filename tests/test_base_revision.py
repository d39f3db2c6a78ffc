"""Revision 0001, checked through the PostgreSQL catalog."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from tests.conftest import ROOT
from tests.helpers import column_typmod, memories, registry_of, seed_store
from vestige_embed import HashEmbedder
from vestige_embed.target import DEFAULT_TARGET, ModelState

HNSW_INDEX = DEFAULT_TARGET.index


def test_embedding_column_has_typmod_256(base_schema: sa.Engine) -> None:
    with base_schema.connect() as conn:
        assert column_typmod(conn) == 256


def test_hnsw_index_has_its_parameters_in_the_catalog(base_schema: sa.Engine) -> None:
    with base_schema.connect() as conn:
        method, options = conn.execute(
            sa.text(
                "SELECT am.amname, c.reloptions FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
                "WHERE c.relname = :name"
            ),
            {"name": HNSW_INDEX},
        ).one()
        opclass = conn.execute(
            sa.text(
                "SELECT opc.opcname FROM pg_index i JOIN pg_opclass opc ON opc.oid = i.indclass[0] "
                "WHERE i.indexrelid = to_regclass(:name)"
            ),
            {"name": HNSW_INDEX},
        ).scalar_one()
    assert method == "hnsw"
    assert sorted(options) == ["ef_construction=64", "m=16"]
    assert opclass == "vector_cosine_ops"


def test_registry_holds_one_ready_row_for_hash_256(base_schema: sa.Engine) -> None:
    with base_schema.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM embedding_model")).scalar_one() == 1
        registry = registry_of(conn)
    assert registry.state is ModelState.READY
    assert registry.signature == HashEmbedder(256).signature()


def test_second_registry_row_for_the_same_target_is_rejected_by_the_database(base_schema: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError, match="embedding_model_target_key"), base_schema.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO embedding_model (target_table, target_column, model_name, dimension, model_hash) "
                "VALUES ('public.knowledge_nodes', 'embedding', 'x', 3, 'h')"
            )
        )


def test_registry_state_outside_ready_and_reembedding_is_rejected(base_schema: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError, match="embedding_model_state"), base_schema.begin() as conn:
        conn.execute(sa.text("UPDATE embedding_model SET state = 'paused'"))


def test_downgrade_to_base_removes_tables_and_index(base_schema: sa.Engine, alembic_config: Config) -> None:
    command.downgrade(alembic_config, "base")
    with base_schema.connect() as conn:
        names = ["knowledge_nodes", "embedding_model", HNSW_INDEX]
        found = conn.execute(sa.text("SELECT to_regclass(n) FROM unnest(CAST(:names AS text[])) n"), {"names": names})
        assert found.scalars().all() == [None, None, None]
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar_one() == 0


def test_downgrade_past_the_base_refuses_while_the_store_holds_rows(base_schema: sa.Engine, db_url: str) -> None:
    from tests.cli_helpers import run_tool

    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(256), memories(3))
    refused = run_tool("alembic", "downgrade", "base", url=db_url)
    assert refused.returncode != 0
    assert "vestige: knowledge_nodes holds 3 rows, and this downgrade drops the table with them" in refused.stderr
    assert "-x drop_rows=yes" in refused.stderr
    with base_schema.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM knowledge_nodes")).scalar_one() == 3
    dropped = run_tool("alembic", "-x", "drop_rows=yes", "downgrade", "base", url=db_url)
    assert dropped.returncode == 0, dropped.stderr
    with base_schema.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('knowledge_nodes')")).scalar() is None


def test_offline_upgrade_prints_ddl_without_a_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VESTIGE_PGDATA": str(tmp_path / "nowhere")}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "0001", "--sql"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "CREATE EXTENSION IF NOT EXISTS vector;" in result.stdout
    assert "embedding VECTOR(256)" in result.stdout
    assert f"CREATE INDEX {HNSW_INDEX} ON knowledge_nodes USING hnsw" in result.stdout
    assert not (tmp_path / "nowhere").exists(), "offline mode must not start the embedded server"
