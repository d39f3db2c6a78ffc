"""The target value and its statement builder: names, validation, and one build-memory formula."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import STORE, memories, seed_store
from vestige_embed import HashEmbedder
from vestige_embed.errors import ConfigError
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import Distance, Statements, Storage, Target
from vestige_embed.target.statements import MIN_BUILD_MEMORY_MB, compiled
from vestige_embed.target.target import MAX_IDENTIFIER, bounded_name


def test_derived_names_follow_the_table_and_column() -> None:
    target = Target(table="sales.documents", embedding="emb")
    assert (target.schema, target.table_name) == ("sales", "documents")
    assert target.index == "idx_documents_emb_hnsw"
    assert target.staging_table == "documents_emb_staging"
    assert target.next_embedding == "emb_next"
    assert target.registry_key == ("sales.documents", "emb")


def test_long_names_are_cut_to_postgresql_limit_and_stay_distinct() -> None:
    a, b = bounded_name("x" * 60, "one"), bounded_name("x" * 60, "two")
    assert len(a) == len(b) == MAX_IDENTIFIER
    assert a != b


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"storage": "float8"}, "storage 'float8' is not one of: vector, halfvec"),
        ({"distance": "hamming"}, "distance 'hamming' is not one of: cosine, l2, inner_product"),
        ({"table": "a.b.c"}, "must be `name` or `schema.name`"),
        ({"content": "  "}, "content must name a column"),
        ({"key": "k" * 64}, "key name"),
    ],
)
def test_a_bad_target_is_refused_with_what_is_wrong(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Target(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("storage", "distance", "opclass"),
    [
        (Storage.VECTOR, Distance.COSINE, "vector_cosine_ops"),
        (Storage.VECTOR, Distance.L2, "vector_l2_ops"),
        (Storage.HALFVEC, Distance.INNER_PRODUCT, "halfvec_ip_ops"),
    ],
)
def test_the_index_opclass_follows_storage_and_distance(storage: Storage, distance: Distance, opclass: str) -> None:
    statement = compiled(Statements(Target(storage=storage, distance=distance)).create_index())
    assert f"USING hnsw (embedding {opclass}) WITH (m = 16, ef_construction = 64)" in statement


def test_identifiers_are_quoted_by_sqlalchemy() -> None:
    target = Target(table="Odd Table", key="Key", content="body", embedding="select")
    statement = compiled(Statements(target).tighten(8))
    assert statement == 'ALTER TABLE "Odd Table" ALTER COLUMN "select" TYPE VECTOR(8)'


def test_online_and_offline_build_memory_are_one_formula(base_schema: sa.Engine) -> None:
    rows = 30_000
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(64), memories(rows), embed=False)
        online = conn.execute(sa.select(STORE.build_memory_mb(rows, 384, 4096))).scalar_one()
        offline = conn.execute(sa.select(STORE.build_memory_mb(STORE.count_rows().scalar_subquery(), 384, 4096)))
        assert offline.scalar_one() == online
        assert online > MIN_BUILD_MEMORY_MB
        assert conn.execute(sa.select(STORE.build_memory_mb(0, 384, 4096))).scalar_one() == MIN_BUILD_MEMORY_MB
        assert conn.execute(sa.select(STORE.build_memory_mb(10**9, 384, 4096))).scalar_one() == 4096


def test_keys_in_binary_need_the_key_type_read_from_the_catalog(engine: sa.Engine) -> None:
    """Neither the locked pass's rows (keys in their wire form) nor a binary write can be
    built for a target whose key type was not read (`resolve_target`)."""
    unresolved = Statements(Target(table="notes"))
    with pytest.raises(ValueError, match="resolve the target against the catalog"):
        unresolved.declare_rows()
    with engine.connect() as conn, pytest.raises(ValueError, match="resolve the target against the catalog"):
        VectorWriter(conn, unresolved, "embedding")
