"""Adoption: a team's existing column registered as a model's, checked first, never re-embedded."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from tests.helpers import index_definition, index_validity, registry_of
from vestige_embed import HashEmbedder, ReembedError
from vestige_embed.run.adopt import adopt_embeddings, release_embeddings
from vestige_embed.store import catalog
from vestige_embed.store.registry import find_registry
from vestige_embed.target import ModelState, Statements, Target

NOTES = Target(table="notes", key="note_id", content="body", embedding="emb")
MODEL = HashEmbedder(64)
BODIES = [f"note {i} about pgvector and alembic" for i in range(80)] + ["", "Grüße aus Köln"]


def create_notes(engine: sa.Engine, vectors: np.ndarray, column_type: str = "vector(64)") -> None:
    """The team's table, filled by its application (no vestige-embed involved)."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE notes (note_id bigint PRIMARY KEY, body text, emb {column_type})"))
        conn.execute(
            sa.text("INSERT INTO notes VALUES (:k, :b, CAST(:v AS vector))"),
            [{"k": k, "b": b, "v": str(v.tolist())} for k, (b, v) in enumerate(zip(BODIES, vectors, strict=True))],
        )


def row_versions(engine: sa.Engine) -> list[tuple[int, str]]:
    """Each row's key and xmin: a rewritten row gets a new xmin."""
    with engine.connect() as conn:
        return [(r[0], str(r[1])) for r in conn.execute(sa.text("SELECT note_id, xmin FROM notes ORDER BY note_id"))]


def registry_absent(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return catalog.registry_shape(conn) is catalog.RegistryShape.ABSENT


def other_models_vectors() -> np.ndarray:
    """Unit vectors of the right size from no model of ours: what a wrong claim points at."""
    random = np.random.default_rng(7).normal(size=(len(BODIES), MODEL.dimension)).astype(np.float32)
    return random / np.linalg.norm(random, axis=1, keepdims=True)


def test_adopting_the_models_own_vectors_registers_them_without_rewriting_a_row(engine: sa.Engine) -> None:
    create_notes(engine, MODEL.embed_batch(BODIES))
    before = row_versions(engine)
    with engine.begin() as conn:
        report = adopt_embeddings(conn, MODEL, NOTES)
    assert report.median_similarity is not None and report.median_similarity > 0.999
    assert row_versions(engine) == before
    with engine.connect() as conn:
        registry = registry_of(conn, NOTES)
        assert (registry.signature, registry.state) == (MODEL.signature(), ModelState.READY)
        assert index_validity(conn, NOTES) is True


def test_a_wrong_model_claim_is_refused_and_changes_nothing(engine: sa.Engine) -> None:
    create_notes(engine, other_models_vectors())
    refused = pytest.raises(ReembedError, match=r"does not hold vestige/hash-64's vectors: .* median cosine similarity")
    with refused, engine.begin() as conn:
        adopt_embeddings(conn, MODEL, NOTES)
    assert registry_absent(engine)
    with engine.connect() as conn:
        assert index_validity(conn, NOTES) is None


def test_a_claim_about_other_content_is_refused(engine: sa.Engine) -> None:
    create_notes(engine, MODEL.embed_batch([f"title {i}" for i in range(len(BODIES))]))
    with pytest.raises(ReembedError, match="--content"), engine.begin() as conn:
        adopt_embeddings(conn, MODEL, NOTES)
    assert registry_absent(engine)


def test_a_column_of_another_size_is_refused(engine: sa.Engine) -> None:
    create_notes(engine, HashEmbedder(32).embed_batch(BODIES), "vector(32)")
    refused = pytest.raises(ReembedError, match=r"notes.emb is vector\(32\); vestige/hash-64 makes 64-d")
    with refused, engine.begin() as conn:
        adopt_embeddings(conn, MODEL, NOTES)
    assert registry_absent(engine)


def test_an_unsized_column_is_checked_then_sized_for_the_index(engine: sa.Engine) -> None:
    create_notes(engine, MODEL.embed_batch(BODIES), "vector")
    with engine.begin() as conn:
        adopt_embeddings(conn, MODEL, NOTES)
    with engine.connect() as conn:
        assert catalog.column_type(conn, Statements(NOTES)) == ("vector", 64)
        assert index_validity(conn, NOTES) is True


def test_an_hnsw_index_already_on_the_column_is_taken_over(engine: sa.Engine) -> None:
    create_notes(engine, MODEL.embed_batch(BODIES))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE INDEX notes_search ON notes USING hnsw (emb vector_cosine_ops)"))
        report = adopt_embeddings(conn, MODEL, NOTES)
    assert report.index == f"notes_search taken over as {NOTES.index}"
    with engine.connect() as conn:
        names = conn.execute(sa.text("SELECT indexname FROM pg_indexes WHERE tablename = 'notes'")).scalars()
        assert sorted(names) == sorted(["notes_pkey", NOTES.index])


def test_an_hnsw_index_of_another_distance_is_refused(engine: sa.Engine) -> None:
    create_notes(engine, MODEL.embed_batch(BODIES))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE INDEX notes_search ON notes USING hnsw (emb vector_l2_ops)"))
    refused = pytest.raises(ReembedError, match="uses vector_l2_ops, but the target's distance is cosine")
    with refused, engine.begin() as conn:
        adopt_embeddings(conn, MODEL, NOTES)
    assert registry_absent(engine)


def test_adopting_again_with_the_same_model_changes_nothing(engine: sa.Engine) -> None:
    create_notes(engine, MODEL.embed_batch(BODIES))
    with engine.begin() as conn:
        adopt_embeddings(conn, MODEL, NOTES)
    with engine.begin() as conn:
        assert adopt_embeddings(conn, MODEL, NOTES).index == f"{NOTES.index} kept"


def test_release_forgets_the_registration_and_keeps_rows_and_index(engine: sa.Engine) -> None:
    create_notes(engine, MODEL.embed_batch(BODIES))
    with engine.begin() as conn:
        adopt_embeddings(conn, MODEL, NOTES)
    before = row_versions(engine)
    with engine.begin() as conn:
        release_embeddings(conn, NOTES)
    assert row_versions(engine) == before
    with engine.connect() as conn:
        assert find_registry(conn, NOTES) is None
        assert index_definition(conn, NOTES) is not None
