"""A re-embed killed with SIGKILL mid-pass, in atomic and in batched-commit mode."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from tests.helpers import (
    CountingEmbedder,
    column_typmod,
    index_validity,
    kill_mid_pass,
    memories,
    registry_of,
    seed_store,
    staged_rows,
    stored_vectors,
)
from vestige_embed import HashEmbedder, ReembedPlan, run_reembed, vector_search
from vestige_embed.target import ModelState

OLD, NEW = HashEmbedder(64), HashEmbedder(128)
ROWS = 200


@pytest.fixture
def store(base_schema: sa.Engine) -> sa.Engine:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))
    return base_schema


@pytest.mark.slow
def test_atomic_run_killed_mid_pass_changes_nothing(store: sa.Engine, db_url: str) -> None:
    with store.connect() as conn:
        before = stored_vectors(conn)
    kill_mid_pass(db_url, "atomic")
    with store.connect() as conn:
        after = stored_vectors(conn)
        registry = registry_of(conn)
        assert column_typmod(conn) == 64
        assert index_validity(conn) is True
    assert (registry.signature, registry.state) == (OLD.signature(), ModelState.READY)
    assert all(np.array_equal(after[k], before[k]) for k in before)


@pytest.mark.slow
def test_batched_run_killed_while_staging_keeps_search_on_the_old_model(store: sa.Engine, db_url: str) -> None:
    with store.connect() as conn:
        before = stored_vectors(conn)
    log = kill_mid_pass(db_url, "batched")
    assert "reembed: wrote batch 3 (8 rows)" in log
    with store.connect() as conn:
        registry = registry_of(conn)
        assert (registry.signature, registry.state) == (OLD.signature(), ModelState.READY)
        after = stored_vectors(conn)
        assert column_typmod(conn) == 64
        assert vector_search(conn, OLD.embed_batch([memories(ROWS)[7]])[0], 1, model=OLD.signature())
    assert all(np.array_equal(after[k], before[k]) for k in before)


@pytest.mark.slow
def test_batched_rerun_after_a_kill_embeds_only_what_was_not_staged(store: sa.Engine, db_url: str) -> None:
    kill_mid_pass(db_url, "batched")
    with store.connect() as conn:
        already = staged_rows(conn)
    assert already >= 3 * 8
    counting = CountingEmbedder(NEW)
    with store.connect() as conn:
        report = run_reembed(conn, counting, ReembedPlan(batch_size=64, commit_batches=True))
    assert report.rows_updated == ROWS
    assert counting.texts == ROWS - already
    with store.connect() as conn:
        registry = registry_of(conn)
        assert (registry.signature, registry.state) == (NEW.signature(), ModelState.READY)
        assert column_typmod(conn) == 128
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        vectors = stored_vectors(conn)
    for row_id, vector in vectors.items():
        np.testing.assert_allclose(vector, NEW.embed_batch([contents[row_id]])[0], rtol=1e-6)
