"""Each distinct content is embedded once per run and per staging pass, with the vectors
a run embedding every row would write."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import sqlalchemy as sa

from tests.helpers import STORE, CountingEmbedder, seed_store, stored_vectors
from vestige_embed import HashEmbedder, ReembedPlan, run_reembed, stage
from vestige_embed.target import DEFAULT_TARGET

OLD, NEW = HashEmbedder(256), HashEmbedder(128)
DISTINCT = 12
#: Small batches, random keys: repeats fall within a batch, in neighbouring and in far batches.
BATCH = 4


def repeated(count: int, distinct: int = DISTINCT) -> list[str]:
    return [f"memory {i % distinct} about rust and async" for i in range(count)]


@pytest.fixture
def store(base_schema: sa.Engine) -> sa.Engine:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, repeated(60))
    return base_schema


def assert_rows_hold_the_vectors_of_their_own_contents(engine: sa.Engine) -> None:
    """What a run without dedupe writes: every row's own content, embedded."""
    with engine.connect() as conn:
        contents = dict(conn.execute(sa.select(STORE.key, STORE.table.c.content)).all())
        vectors = stored_vectors(conn)
    keys = list(contents)
    expected = NEW.embed_batch([contents[k] for k in keys])
    np.testing.assert_array_equal(np.stack([vectors[k] for k in keys]), expected)  # type: ignore[misc]


def staged_vectors(conn: sa.Connection) -> dict[uuid.UUID, str]:
    staging = sa.table(DEFAULT_TARGET.staging_table, sa.column("row_key"), sa.column("staged_vector"))
    return dict(conn.execute(sa.select(staging.c.row_key, sa.cast(staging.c.staged_vector, sa.Text))).all())


@pytest.mark.parametrize("commit_batches", [False, True], ids=["atomic", "batched"])
def test_a_change_embeds_each_distinct_content_once(store: sa.Engine, commit_batches: bool) -> None:
    counting = CountingEmbedder(NEW)
    with store.connect() as conn:
        report = run_reembed(conn, counting, ReembedPlan(batch_size=BATCH, commit_batches=commit_batches))
        conn.commit()
    assert report.rows_updated == 60
    assert counting.texts == DISTINCT
    assert max(counting.seen.values()) == 1
    assert_rows_hold_the_vectors_of_their_own_contents(store)


def test_staging_embeds_each_distinct_content_once(store: sa.Engine) -> None:
    counting = CountingEmbedder(NEW)
    with store.connect() as conn:
        report = stage(conn, counting, batch_size=BATCH)
    assert report.rows_staged == 60
    assert counting.texts == DISTINCT
    with store.connect() as conn:
        by_content = {}
        contents = dict(conn.execute(sa.select(STORE.key, STORE.table.c.content)).all())
        for key, vector in staged_vectors(conn).items():
            assert by_content.setdefault(contents[key], vector) == vector
    assert len(by_content) == DISTINCT


def test_a_later_staging_pass_reuses_vectors_staged_for_the_same_content(store: sa.Engine) -> None:
    with store.connect() as conn:
        stage(conn, NEW, batch_size=BATCH)
    with store.begin() as conn:
        conn.execute(STORE.table.insert(), [{"id": uuid.uuid4(), "content": t} for t in [*repeated(3), "brand new"]])
    counting = CountingEmbedder(NEW)
    with store.connect() as conn:
        report = stage(conn, counting, batch_size=BATCH)
    assert (report.rows_staged, report.rows_already_fresh) == (4, 60)
    assert counting.seen == {"brand new": 1}
    with store.begin() as conn:
        run_reembed(conn, NEW, ReembedPlan(batch_size=BATCH))
    assert_rows_hold_the_vectors_of_their_own_contents(store)
