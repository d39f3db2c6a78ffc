"""The locked data pass reads ahead and queues its writes (pipeline mode): every row is still
written once, and a statement the server refuses fails the run as any database error does."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tests.helpers import CountingEmbedder, column_typmod, memories, registry_of, seed_store, stored_vectors
from vestige_embed import HashEmbedder, ReembedPlan, register_target, run_reembed
from vestige_embed.store.pipelined import AHEAD, CHUNK_BATCHES, SEND_BUFFER, QueuedWrites
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import DEFAULT_TARGET, KeyType, ModelState, Statements, Target

OLD, NEW = HashEmbedder(64), HashEmbedder(128)
BATCH = 4
CHUNK = BATCH * CHUNK_BATCHES


def seeded(engine: sa.Engine, count: int) -> None:
    with engine.begin() as conn:
        seed_store(conn, OLD, memories(count))


@pytest.mark.parametrize(
    "rows",
    [
        CHUNK * (AHEAD + 2),  # whole chunks only: the last fetch answers no rows
        CHUNK * (AHEAD + 2) + BATCH + 1,  # a short last chunk, ending in a short batch
        BATCH - 1,  # fewer rows than one batch
    ],
)
def test_a_pass_over_many_fetched_chunks_writes_every_row_once(base_schema: sa.Engine, rows: int) -> None:
    seeded(base_schema, rows)
    counting = CountingEmbedder(NEW)
    with base_schema.begin() as conn:
        report = run_reembed(conn, counting, ReembedPlan(batch_size=BATCH))
    assert report.rows_updated == rows
    assert counting.texts == rows  # every memory is distinct: each embedded exactly once
    with base_schema.connect() as conn:
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        for key, vector in stored_vectors(conn).items():
            np.testing.assert_allclose(vector, NEW.embed_batch([contents[key]])[0], rtol=1e-6)
        assert registry_of(conn).signature == NEW.signature()


@pytest.mark.parametrize("refused", [CHUNK + 2, CHUNK * 3 - 1], ids=["mid_pass", "last_row"])
def test_a_write_the_server_refuses_fails_the_run_as_a_database_error_and_changes_nothing(
    base_schema: sa.Engine, refused: int
) -> None:
    seeded(base_schema, CHUNK * 3)
    with base_schema.begin() as conn:
        before = stored_vectors(conn)
        # Refuse the update of one row (rows come by content); the last one's answer is read at the end.
        refused_id = conn.execute(
            sa.text('SELECT id FROM knowledge_nodes ORDER BY content COLLATE "C" OFFSET :n LIMIT 1'), {"n": refused}
        ).scalar_one()
        conn.execute(
            sa.text(
                "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.id = '{refused_id}' THEN RAISE EXCEPTION 'row % refused by the test', NEW.id; END IF; "
                "RETURN NEW; END $$"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER refuse_one BEFORE UPDATE ON knowledge_nodes FOR EACH ROW EXECUTE FUNCTION refuse_one()"
            )
        )
    with pytest.raises(sa.exc.DBAPIError, match="refused by the test"), base_schema.begin() as conn:
        run_reembed(conn, NEW, ReembedPlan(batch_size=BATCH))
    with base_schema.connect() as conn:
        assert stored_vectors(conn).keys() == before.keys()
        assert all(np.array_equal(vector, before[key]) for key, vector in stored_vectors(conn).items())
        assert column_typmod(conn) == OLD.dimension
        assert registry_of(conn).signature == OLD.signature()
        assert registry_of(conn).state is ModelState.READY


def test_a_content_of_another_text_type_is_embedded_as_its_text(engine: sa.Engine) -> None:
    """Rows are fetched in binary: a content expression of an extension's type (citext)
    still reaches the model as text."""
    notes = Target(table="notes", key="id", content="(body)", embedding="embedding")
    texts = [f"Note {i} about Postgres" for i in range(CHUNK + 3)]
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS citext"))
        conn.execute(
            sa.text(f"CREATE TABLE notes (id bigint PRIMARY KEY, body citext, embedding vector({OLD.dimension}))")
        )
        conn.execute(
            sa.text("INSERT INTO notes VALUES (:id, :body)"), [{"id": i, "body": t} for i, t in enumerate(texts)]
        )
        VectorWriter(conn, Statements(notes.with_key_type(KeyType.BIGINT)), "embedding")(
            list(range(len(texts))), OLD.embed_batch(texts)
        )
        register_target(conn, notes, OLD.signature())
    with engine.begin() as conn:
        run_reembed(conn, NEW, ReembedPlan(batch_size=BATCH), target=notes)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT id, embedding::real[] FROM notes")).all())
    for key, text in enumerate(texts):
        np.testing.assert_allclose(stored[key], NEW.embed_batch([text])[0], rtol=1e-6)


@pytest.mark.parametrize(
    ("key_type", "keys"),
    [
        ("text", ["", "a", "clé ü 東京", "x" * 300, "a b"]),
        ("bigint", [-(2**63), -1, 0, 7, 2**63 - 1]),
        ("uuid", ["00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"]),
    ],
)
def test_every_key_type_is_written_back_as_it_was_read(engine: sa.Engine, key_type: str, keys: list[object]) -> None:
    """Keys travel as the bytes they were fetched as (no Python value made of them):
    extreme values, empty and non-ASCII text keys still find their rows."""
    items = Target(table="items", key="k", content="body", embedding="embedding")
    texts = [f"item {i} of the {key_type} keyed table" for i in range(len(keys))]
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE items (k {key_type} PRIMARY KEY, body text, embedding vector({OLD.dimension}))")
        )
        conn.execute(
            sa.text("INSERT INTO items (k, body) VALUES (:k, :body)"),
            [{"k": k, "body": t} for k, t in zip(keys, texts, strict=True)],
        )
        register_target(conn, items, OLD.signature())
    with engine.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(batch_size=2), target=items)
    assert report.rows_updated == len(keys)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT body, embedding::real[] FROM items")).all())
    for text in texts:
        np.testing.assert_allclose(stored[text], NEW.embed_batch([text])[0], rtol=1e-6)


def test_a_local_connection_queues_more_writes_while_they_run_and_gets_its_buffer_back(base_schema: sa.Engine) -> None:
    """Over a Unix socket (this suite's), the kernel's default holds about one batch."""
    cap = int(Path("/proc/sys/net/core/wmem_max").read_text())
    with base_schema.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        with socket.socket(fileno=os.dup(driver.pgconn.socket)) as sock:
            assert sock.family == socket.AF_UNIX
            before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            with QueuedWrites(conn, Statements(DEFAULT_TARGET.with_key_type(KeyType.UUID)), "embedding"):
                during = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            after = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    assert during == 2 * min(SEND_BUFFER, cap)  # Linux keeps twice what was set, up to twice the cap
    assert after == before
