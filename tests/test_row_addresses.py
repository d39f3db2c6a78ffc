"""A locked data pass writes each row back to the address (`ctid`) it read it at, without
a search of the key's index, only while no row can move: under a lock that keeps other
sessions from writing, in a plain table, with no trigger that fires on UPDATE. Anywhere
else it finds its rows by key, and every row still gets its own content's vector."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa

from tests.helpers import STORE, CountingEmbedder, OtherModel64, memories, seed_store, stored_vectors
from vestige_embed import Embedder, HashEmbedder, ReembedPlan, run_reembed
from vestige_embed.embedders.base import Matrix
from vestige_embed.run.pipeline import run_locked_pass
from vestige_embed.run.progress import NoProgress
from vestige_embed.target import DEFAULT_TARGET, KeyType, Statements, Target

OLD, NEW = HashEmbedder(64), HashEmbedder(128)
ROWS, BATCH = 40, 4
ACTIVITY = sa.text("SELECT query FROM pg_stat_activity WHERE pid = :pid")
#: After each write, every row of the table is updated again (a new version, a new address).
_MOVE_EVERY_ROW = (
    "CREATE FUNCTION move_every_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF pg_trigger_depth() = 1 THEN UPDATE knowledge_nodes SET content = content; END IF; RETURN NULL; END $$",
    "CREATE TRIGGER move_every_row AFTER UPDATE ON knowledge_nodes "
    "FOR EACH STATEMENT EXECUTE FUNCTION move_every_row()",
)


def last_statement_of(engine: sa.Engine, pid: int, *, starting: str) -> str:
    """The statement server process `pid` runs or ran last, waiting (5 s at most) for one
    that starts with `starting`."""
    with engine.connect() as other:
        for _ in range(500):
            query = str(other.execute(ACTIVITY, {"pid": pid}).scalar_one())
            if query.startswith(starting):
                return query
            time.sleep(0.01)
    raise AssertionError(f"process {pid} ran no statement starting with {starting}; last: {query}")


def assert_each_row_has_its_contents_vector(engine: sa.Engine, embedder: Embedder) -> None:
    with engine.connect() as conn:
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        stored = stored_vectors(conn)
    assert stored.keys() == contents.keys()
    for key, vector in stored.items():
        np.testing.assert_allclose(vector, embedder.embed_batch([contents[key]])[0], rtol=1e-6)


def test_a_run_on_a_plain_table_writes_each_row_back_where_it_read_it(base_schema: sa.Engine) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))

    class SeesTheFirstWrite(CountingEmbedder):
        """While the third batch is embedded, the first one's write has been sent (a batch is
        written once the next is embedded): another session reads the statement the run's
        server process ran last."""

        write = ""

        def embed_batch(self, texts: Sequence[str]) -> Matrix:
            if self.calls == 2:
                self.write = last_statement_of(base_schema, pid, starting="UPDATE")
            return super().embed_batch(texts)

    with base_schema.begin() as conn:  # one transaction: the whole change is the locked pass
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        embedder = SeesTheFirstWrite(NEW)
        report = run_reembed(conn, embedder, ReembedPlan(batch_size=BATCH))
    assert report.rows_updated == ROWS
    assert f"WHERE {DEFAULT_TARGET.table}.ctid = v.address" in embedder.write
    assert_each_row_has_its_contents_vector(base_schema, NEW)


def test_a_table_whose_update_trigger_moves_other_rows_is_reembedded_whole(base_schema: sa.Engine) -> None:
    """Each of the pass's writes moves every row to a new address: they are found by key."""
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))
        for statement in _MOVE_EVERY_ROW:
            conn.execute(sa.text(statement))
    with base_schema.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(batch_size=BATCH))
    assert report.rows_updated == ROWS
    assert_each_row_has_its_contents_vector(base_schema, NEW)


def test_the_rows_of_a_child_table_are_reembedded_with_their_parents(base_schema: sa.Engine) -> None:
    """A child's rows are read through its parent: an address is unique only within one table."""
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))
        conn.execute(sa.text("CREATE TABLE archived_nodes () INHERITS (knowledge_nodes)"))
        archived = [f"archived memory {i} about vacuum" for i in range(ROWS)]
        conn.execute(
            sa.text("INSERT INTO archived_nodes (id, content, embedding) VALUES (gen_random_uuid(), :c, :v)"),
            [{"c": c, "v": str(v.tolist())} for c, v in zip(archived, OLD.embed_batch(archived), strict=True)],
        )
    with base_schema.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(batch_size=BATCH))
    assert report.rows_updated == 2 * ROWS
    assert_each_row_has_its_contents_vector(base_schema, NEW)


def test_a_pass_without_the_table_lock_finds_the_rows_another_session_moved(base_schema: sa.Engine) -> None:
    """As an application runs it for its new rows (the demo's `embed_missing`): without the
    lock another session may update rows between the read and the write."""
    with base_schema.begin() as conn:
        seed_store(conn, OtherModel64(), memories(ROWS))
    new = HashEmbedder(64)  # same size: the column stays as it is

    class MovesRowsFirst(CountingEmbedder):
        def embed_batch(self, texts: Sequence[str]) -> Matrix:
            if self.calls == 0:
                with base_schema.begin() as other:
                    other.execute(sa.text("UPDATE knowledge_nodes SET content = content"))
            return super().embed_batch(texts)

    with base_schema.begin() as conn:
        written = run_locked_pass(conn, STORE, "embedding", MovesRowsFirst(new), BATCH, progress=NoProgress())
    assert written == ROWS
    assert_each_row_has_its_contents_vector(base_schema, new)


def test_a_pass_through_an_updatable_view_finds_its_rows_by_key(base_schema: sa.Engine) -> None:
    """A view has no row addresses of its own, even under a lock that keeps writers out."""
    with base_schema.begin() as conn:
        seed_store(conn, OtherModel64(), memories(ROWS))
        conn.execute(sa.text("CREATE VIEW memory_view AS SELECT id, content, embedding FROM knowledge_nodes"))
    view = Statements(
        Target(table="memory_view", key="id", content="content", embedding="embedding").with_key_type(KeyType.UUID)
    )
    new = HashEmbedder(64)
    with base_schema.begin() as conn:
        conn.execute(view.lock())
        written = run_locked_pass(conn, view, "embedding", new, BATCH, progress=NoProgress())
    assert written == ROWS
    assert_each_row_has_its_contents_vector(base_schema, new)
