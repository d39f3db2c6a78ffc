"""A role that could stage every vector but could not make the change is refused first."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.helpers import memories, registry_of, seed_store
from vestige_embed import HashEmbedder, ReembedError, ReembedPlan, run_reembed
from vestige_embed.target import DEFAULT_TARGET


@pytest.fixture
def app_role(base_schema: sa.Engine, db_url: str) -> Iterator[sa.Engine]:
    """An engine connected as a role that may read and write the store but does not own it."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(256), memories(10))
        conn.execute(sa.text(f"CREATE ROLE {name} LOGIN"))
        conn.execute(sa.text(f"GRANT CREATE, USAGE ON SCHEMA public TO {name}"))
        conn.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE ON knowledge_nodes, embedding_model TO {name}"))
    role = sa.create_engine(sa.make_url(db_url).set(username=name), poolclass=sa.pool.NullPool)
    yield role
    role.dispose()
    with base_schema.begin() as conn:
        conn.execute(sa.text(f"DROP OWNED BY {name}"))
        conn.execute(sa.text(f"DROP ROLE {name}"))


@pytest.mark.parametrize("batched", [False, True], ids=["atomic", "batched"])
def test_a_role_that_does_not_own_the_table_is_refused_before_any_work(
    app_role: sa.Engine, base_schema: sa.Engine, batched: bool
) -> None:
    refused = pytest.raises(ReembedError, match=r"may not alter knowledge_nodes \(owner: postgres\)")
    with app_role.connect() as conn, refused:
        run_reembed(conn, HashEmbedder(64), ReembedPlan(commit_batches=batched))
    with base_schema.connect() as conn:
        staging = conn.execute(sa.text(f"SELECT to_regclass('{DEFAULT_TARGET.staging_table}')")).scalar()
        assert staging is None  # nothing staged for a change that could not be made
        assert registry_of(conn).signature == HashEmbedder(256).signature()
