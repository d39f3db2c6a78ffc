"""Any team's table: a target unlike the default, through every path, and two targets at once.

`documents(doc_id bigint, title, body, emb halfvec)` embedded from `title || ' ' || body`,
indexed for inner product: every name, key type, storage and distance differs from
`knowledge_nodes`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_tool
from tests.conftest import ROOT
from tests.helpers import STORE, CountingEmbedder, memories, registry_of, run_psql, seed_store
from vestige_embed import HashEmbedder, ReembedPlan, dry_run_reembed, register_target, run_reembed, stage, vector_search
from vestige_embed.errors import ReembedError
from vestige_embed.store import catalog
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import DEFAULT_TARGET, Distance, KeyType, ModelState, Statements, Storage, Target

DOCUMENTS = Target(
    table="documents",
    key="doc_id",
    content="title || ' ' || body",
    embedding="emb",
    storage=Storage.HALFVEC,
    distance=Distance.INNER_PRODUCT,
)
OLD, NEW = HashEmbedder(32), HashEmbedder(48)
ROWS = 60
#: halfvec keeps ~3 significant digits.
HALF = {"atol": 2e-3, "rtol": 0}


def titles_and_bodies(count: int) -> list[tuple[int, str, str | None]]:
    return [
        (1000 + 7 * i, f"title {i}", None if i % 13 == 0 else f"body of document {i} about pgvector")
        for i in range(count)
    ]


def text_of(title: str, body: str | None) -> str:
    """What PostgreSQL makes of `title || ' ' || body` (NULL when body is NULL), embedded as ''."""
    return "" if body is None else f"{title} {body}"


def create_documents(conn: sa.Connection, embedder: HashEmbedder, rows: list[tuple[int, str, str | None]]) -> None:
    """A team's own table, embedded and registered the way their application did it."""
    conn.execute(
        sa.text(
            f"CREATE TABLE documents (doc_id bigint PRIMARY KEY, title text NOT NULL, body text, "
            f"emb halfvec({embedder.dimension}))"
        )
    )
    conn.execute(sa.text("INSERT INTO documents (doc_id, title, body) VALUES (:k, :t, :b)"), [
        {"k": k, "t": t, "b": b} for k, t, b in rows
    ])  # fmt: skip
    target = DOCUMENTS.with_key_type(KeyType.BIGINT)
    vectors = embedder.embed_batch([text_of(t, b) for _, t, b in rows])
    VectorWriter(conn, Statements(target), target.embedding)([k for k, _, _ in rows], vectors)
    conn.execute(Statements(target).create_index())
    register_target(conn, DOCUMENTS, embedder.signature())


@pytest.fixture
def documents(engine: sa.Engine) -> sa.Engine:
    with engine.begin() as conn:
        create_documents(conn, OLD, titles_and_bodies(ROWS))
    return engine


def stored(engine: sa.Engine) -> dict[int, tuple[str, np.ndarray | None]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT doc_id, title, body, emb::real[] FROM documents")).all()
    return {r[0]: (text_of(r[1], r[2]), None if r[3] is None else np.asarray(r[3], np.float32)) for r in rows}


def assert_documents_in_space(engine: sa.Engine, embedder: HashEmbedder, count: int = ROWS) -> None:
    rows = stored(engine)
    assert len(rows) == count
    keys = sorted(rows)
    expected = embedder.embed_batch([rows[k][0] for k in keys])
    for key, vector in zip(keys, expected, strict=True):
        got = rows[key][1]
        assert got is not None and got.shape == (embedder.dimension,)
        np.testing.assert_allclose(got, vector, **HALF)
    st = Statements(DOCUMENTS)
    with engine.connect() as conn:
        registry = registry_of(conn, DOCUMENTS)
        assert (registry.signature, registry.state) == (embedder.signature(), ModelState.READY)
        assert catalog.column_type(conn, st) == ("halfvec", embedder.dimension)
        assert catalog.index_validity(conn, st) is True
        definition = catalog.index_definition(conn, st) or ""
    assert "USING hnsw (emb halfvec_ip_ops)" in definition


def assert_search_finds_itself(engine: sa.Engine, embedder: HashEmbedder) -> None:
    rows = stored(engine)
    key = sorted(rows)[5]
    with engine.connect() as conn:
        hits = vector_search(
            conn, embedder.embed_batch([rows[key][0]])[0], 3, model=embedder.signature(), target=DOCUMENTS
        )
    assert hits[0].key == key
    assert hits[0].content == rows[key][0]


def test_atomic_change_on_a_bigint_halfvec_inner_product_target(documents: sa.Engine) -> None:
    counting = CountingEmbedder(NEW)
    with documents.begin() as conn:
        report = run_reembed(conn, counting, ReembedPlan(batch_size=16), target=DOCUMENTS)
    distinct = {text_of(title, body) for _, title, body in titles_and_bodies(ROWS)}
    assert (report.rows_updated, counting.texts) == (ROWS, len(distinct))
    assert report.data_pass_secs > 0
    assert report.writes_blocked_secs > 0
    assert_documents_in_space(documents, NEW)
    assert_search_finds_itself(documents, NEW)


@pytest.mark.parametrize(("prebuild", "strategy"), [(True, "staged_swap"), (False, "in_place")])
def test_batched_change_on_the_second_target(documents: sa.Engine, prebuild: bool, strategy: str) -> None:
    plan = ReembedPlan(batch_size=16, commit_batches=True, prebuild_index=prebuild)
    with documents.connect() as conn:
        report = run_reembed(conn, NEW, plan, target=DOCUMENTS)
    assert report.rows_updated == ROWS
    assert report.strategy == strategy
    assert report.data_pass_secs > 0
    # Batched mode takes no table lock for the data pass: writers wait only for the DDL steps.
    assert 0 < report.writes_blocked_secs < report.duration_secs + report.index_rebuild_secs
    assert_documents_in_space(documents, NEW)


def test_new_column_approach_on_the_second_target(documents: sa.Engine) -> None:
    from vestige_embed.run.plan import TypmodApproach

    with documents.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(typmod_approach=TypmodApproach.NEW_COLUMN), target=DOCUMENTS)
    assert report.strategy == "new_column"
    assert_documents_in_space(documents, NEW)


def test_staged_swap_on_the_second_target(documents: sa.Engine) -> None:
    with documents.connect() as conn:
        staged = stage(conn, NEW, target=DOCUMENTS, batch_size=16)
    assert staged.rows_staged == ROWS
    with documents.begin() as conn:
        conn.execute(sa.text("UPDATE documents SET body = 'edited after staging' WHERE doc_id = 1007"))
        conn.execute(sa.text("INSERT INTO documents (doc_id, title, body) VALUES (5, 'late', 'added after staging')"))
    counting = CountingEmbedder(NEW)
    with documents.connect() as conn:
        report = run_reembed(conn, counting, ReembedPlan(concurrent_index=True, commit_batches=True), target=DOCUMENTS)
    assert report.strategy == "staged_swap"
    # The run stages the two rows changed since `stage` first; the window applies all of them.
    assert (report.rows_from_staging, counting.texts) == (ROWS + 1, 2)
    assert report.window_secs < 1.0
    assert 0 < report.writes_blocked_secs < report.duration_secs + report.index_rebuild_secs
    assert report.data_pass_secs > 0
    assert_documents_in_space(documents, NEW, ROWS + 1)
    assert_search_finds_itself(documents, NEW)


def test_dimension_over_2000_works_end_to_end_on_halfvec(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        create_documents(conn, HashEmbedder(256), titles_and_bodies(20))
    wide = HashEmbedder(3072)
    with engine.begin() as conn:
        report = run_reembed(conn, wide, target=DOCUMENTS)
    assert report.rows_updated == 20
    assert_documents_in_space(engine, wide, 20)
    assert_search_finds_itself(engine, wide)
    with engine.connect() as conn:
        conn.execute(sa.text("SET enable_seqscan = off"))
        search = Statements(DOCUMENTS).search(wide.signature(), 3).params(probe=wide.embed_batch(["title 1"])[0])
        plan = conn.execute(sa.text(f"EXPLAIN {search.compile(conn, compile_kwargs={'literal_binds': True})}"))
        assert f"Index Scan using {DOCUMENTS.index}" in "\n".join(plan.scalars())


def test_dimension_over_2000_on_vector_storage_is_refused_with_the_fix(base_schema: sa.Engine) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(64), memories(5))
    with pytest.raises(ReembedError, match=r"takes at most 2000.*halfvec"), base_schema.begin() as conn:
        run_reembed(conn, HashEmbedder(3072))


def test_two_targets_in_one_database_change_independently(base_schema: sa.Engine) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(256), memories(30))
        create_documents(conn, OLD, titles_and_bodies(ROWS))
    with base_schema.begin() as conn:
        run_reembed(conn, NEW, target=DOCUMENTS)
    with base_schema.connect() as conn:
        assert registry_of(conn).signature == HashEmbedder(256).signature()
        assert catalog.column_dimension(conn, STORE) == 256
    assert_documents_in_space(base_schema, NEW)

    with base_schema.begin() as conn:
        run_reembed(conn, HashEmbedder(64))
    with base_schema.connect() as conn:
        assert registry_of(conn).signature == HashEmbedder(64).signature()
        assert registry_of(conn, DOCUMENTS).signature == NEW.signature()
        hits = vector_search(
            conn, HashEmbedder(64).embed_batch([memories(30)[4]])[0], 1, model=HashEmbedder(64).signature()
        )
    assert hits[0].content == memories(30)[4]
    assert_documents_in_space(base_schema, NEW)


def test_a_target_names_missing_columns_before_changing_anything(documents: sa.Engine) -> None:
    wrong = Target(table="documents", key="id", content="body", embedding="emb", storage="halfvec")
    with pytest.raises(ReembedError, match="documents has no column id"), documents.begin() as conn:
        run_reembed(conn, NEW, target=wrong)
    assert_documents_in_space(documents, OLD)


# The offline script, printed by Alembic from a team's revision and run by psql.

REVISION = '''"""re-embed documents"""

from alembic import op

import vestige_embed.alembic  # noqa: F401

revision = "d001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.reembed(
        model="vestige/hash-48",
        dimension=48,
        table="documents",
        key="doc_id",
        content="title || ' ' || body",
        embedding="emb",
        storage="halfvec",
        distance="inner_product",
    )


def downgrade() -> None:
    pass
'''


def documents_project(tmp_path: Path) -> Path:
    """A team's Alembic project: this repo's env.py, one revision that re-embeds documents."""
    (tmp_path / "migrations" / "versions").mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text((ROOT / "migrations" / "env.py").read_text())
    (tmp_path / "migrations" / "versions" / "d001_reembed_documents.py").write_text(REVISION)
    (tmp_path / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    return tmp_path


def test_offline_script_on_the_second_target_through_psql(
    postgresql: psycopg.Connection[Any], documents: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    target_args = ["--table", "documents", "--key", "doc_id", "--content", "title || ' ' || body"]
    target_args += ["--embedding", "emb", "--storage", "halfvec", "--distance", "inner_product"]
    staged = run_tool("vestige", "migrate", "stage", *target_args, "--model", NEW.name, url=db_url)
    assert staged.returncode == 0, staged.stderr
    assert f"rows_staged {ROWS}" in staged.stdout
    project = documents_project(tmp_path)
    printed = run_tool("alembic", "upgrade", "head", "--sql", url=None, cwd=project)
    assert printed.returncode == 0, printed.stderr
    assert "ALTER TABLE documents ALTER COLUMN emb TYPE HALFVEC(48)" in printed.stdout
    script = tmp_path / "change.sql"
    script.write_text(printed.stdout)
    result = run_psql(postgresql, script)
    assert result.returncode == 0, result.stderr
    assert_documents_in_space(documents, NEW)


def test_offline_script_on_the_second_target_stops_at_its_guard(
    postgresql: psycopg.Connection[Any], documents: sa.Engine, tmp_path: Path
) -> None:
    project = documents_project(tmp_path)
    printed = run_tool("alembic", "upgrade", "head", "--sql", url=None, cwd=project)
    script = tmp_path / "change.sql"
    script.write_text(printed.stdout)
    result: subprocess.CompletedProcess[str] = run_psql(postgresql, script)
    assert result.returncode == 3
    assert "documents_emb_staging does not exist" in result.stderr
    assert_documents_in_space(documents, OLD)


def test_default_target_is_vestiges_own_store() -> None:
    assert (DEFAULT_TARGET.table, DEFAULT_TARGET.key, DEFAULT_TARGET.content, DEFAULT_TARGET.embedding) == (
        "knowledge_nodes",
        "id",
        "content",
        "embedding",
    )
    assert DEFAULT_TARGET.index == "idx_knowledge_nodes_embedding_hnsw"
    assert DEFAULT_TARGET.registry_key == ("public.knowledge_nodes", "embedding")


def test_offline_script_refuses_what_it_cannot_reproduce(tmp_path: Path) -> None:
    project = documents_project(tmp_path)
    revision = project / "migrations" / "versions" / "d001_reembed_documents.py"
    revision.write_text(
        revision.read_text().replace(
            'distance="inner_product",', 'distance="inner_product",\n        concurrent_index=True,'
        )
    )
    printed = run_tool("alembic", "upgrade", "head", "--sql", url=None, cwd=project)
    assert printed.returncode != 0
    assert "concurrent_index=True) cannot be printed as a script" in printed.stderr


def test_a_revision_with_concurrent_index_runs_online_through_alembic(
    documents: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    project = documents_project(tmp_path)
    revision = project / "migrations" / "versions" / "d001_reembed_documents.py"
    concurrent = 'distance="inner_product",\n        concurrent_index=True,'
    revision.write_text(revision.read_text().replace('distance="inner_product",', concurrent))
    up = run_tool("alembic", "upgrade", "head", url=db_url, cwd=project)
    assert up.returncode == 0, up.stderr
    assert "done (staged_swap)" in up.stderr
    assert_documents_in_space(documents, NEW)


def test_the_dry_run_samples_and_counts_a_content_expression(documents: sa.Engine) -> None:
    counting = CountingEmbedder(NEW)
    with documents.begin() as conn:
        found = dry_run_reembed(conn, counting, target=DOCUMENTS).estimate
    assert found is not None
    texts = {text_of(title, body) for _, title, body in titles_and_bodies(ROWS)}
    assert found.distinct_contents == len(texts)
    assert found.sampled_rows > 0
    assert set(counting.seen) <= texts
