"""Drift: a column resized outside vestige-embed while the registry still names the old model.
The run re-embeds instead of answering `nothing to do`, and search refuses by name."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from tests.helpers import column_typmod, memories, registry_of, seed_store, stored_vectors
from vestige_embed import HashEmbedder, ReembedPlan, SearchUnavailable, dry_run_reembed, run_reembed, vector_search
from vestige_embed.target import DEFAULT_TARGET

REGISTERED = HashEmbedder(256)
ROWS = 20


@pytest.fixture
def drifted(base_schema: sa.Engine) -> sa.Engine:
    """Registry: hash-256, ready. Column: vector(64), holding 64-d vectors of something else."""
    with base_schema.begin() as conn:
        seed_store(conn, REGISTERED, memories(ROWS))
        conn.execute(sa.text(f"DROP INDEX {DEFAULT_TARGET.index}"))
        other = "array_fill(0.125, ARRAY[64])::vector"
        conn.execute(sa.text(f"ALTER TABLE knowledge_nodes ALTER COLUMN embedding TYPE vector(64) USING {other}"))
    return base_schema


def test_a_run_to_the_registered_model_over_a_resized_column_re_embeds_every_row(drifted: sa.Engine) -> None:
    with drifted.begin() as conn:
        report = run_reembed(conn, REGISTERED, ReembedPlan())
    assert report.rows_updated == ROWS
    with drifted.connect() as conn:
        assert column_typmod(conn) == REGISTERED.dimension
        contents = {row[0]: row[1] for row in conn.execute(sa.text("SELECT id, content FROM knowledge_nodes"))}
        vectors = stored_vectors(conn)
        assert registry_of(conn).signature == REGISTERED.signature()
    for key, vector in vectors.items():
        np.testing.assert_allclose(vector, REGISTERED.embed_batch([contents[key]])[0], rtol=1e-6)


def test_a_dry_run_over_a_resized_column_counts_every_row(drifted: sa.Engine) -> None:
    with drifted.begin() as conn:
        summary = dry_run_reembed(conn, REGISTERED, ReembedPlan())
    assert (summary.rows_to_update, summary.would_alter_typmod) == (ROWS, True)


def test_search_over_a_resized_column_is_refused_naming_the_drift(drifted: sa.Engine) -> None:
    probe = REGISTERED.embed_batch(["memory"])[0]
    with drifted.connect() as conn, pytest.raises(SearchUnavailable, match="changed outside vestige-embed"):
        vector_search(conn, probe, 3, model=REGISTERED.signature())
