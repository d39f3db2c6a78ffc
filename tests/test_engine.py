"""The re-embed engine against the real PostgreSQL + pgvector, with deterministic embedders."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from tests.helpers import (
    STORE,
    CountingEmbedder,
    OtherModel64,
    column_typmod,
    index_definition,
    index_validity,
    memories,
    registry_of,
    seed_store,
    stored_vectors,
)
from vestige_embed import HashEmbedder, ReembedPlan, dry_run_reembed, run_reembed, vector_search
from vestige_embed.errors import ReembedError
from vestige_embed.run.plan import TypmodApproach
from vestige_embed.run.progress import NoProgress
from vestige_embed.target import DEFAULT_TARGET, ModelSignature, ModelState

HNSW_INDEX = DEFAULT_TARGET.index

OLD, NEW = HashEmbedder(64), HashEmbedder(128)


def seeded(engine: sa.Engine, count: int, embedder: HashEmbedder = OLD, *, embed: bool = True) -> list:
    with engine.begin() as conn:
        return seed_store(conn, embedder, memories(count), embed=embed)


def assert_all_in_space(engine: sa.Engine, embedder: HashEmbedder, count: int) -> None:
    with engine.connect() as conn:
        vectors = stored_vectors(conn)
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        registry = registry_of(conn)
    assert len(vectors) == count
    for row_id, vector in vectors.items():
        assert vector is not None
        np.testing.assert_allclose(vector, embedder.embed_batch([contents[row_id]])[0], rtol=1e-6)
    assert registry.signature == embedder.signature()
    assert registry.state is ModelState.READY


def test_reembed_no_op_when_signature_matches(base_schema: sa.Engine) -> None:
    seeded(base_schema, 10)
    counting = CountingEmbedder(OLD)
    with base_schema.begin() as conn:
        report = run_reembed(conn, counting, ReembedPlan())
    assert report.rows_updated == 0
    assert counting.calls == 0


def test_reembed_plan_defaults() -> None:
    plan = ReembedPlan()
    assert (plan.batch_size, plan.drop_hnsw_first, plan.concurrent_index) == (128, True, False)


def test_reembed_dry_run_returns_summary_without_writing(base_schema: sa.Engine) -> None:
    seeded(base_schema, 50)
    with base_schema.connect() as conn:
        before = stored_vectors(conn)
    counting = CountingEmbedder(NEW)
    with base_schema.begin() as conn:
        summary = dry_run_reembed(conn, counting, ReembedPlan(batch_size=16))
    assert summary.rows_to_update == 50
    assert summary.embedder_batches == 4
    assert summary.would_alter_typmod is True
    assert summary.current_signature == OLD.signature()
    assert summary.target_signature == NEW.signature()
    with base_schema.connect() as conn:
        after = stored_vectors(conn)
        assert registry_of(conn).signature == OLD.signature()
        assert conn.execute(sa.text("SELECT to_regclass('vestige_estimate_calibration')")).scalar() is None
    assert after.keys() == before.keys()
    assert all(np.array_equal(after[k], before[k]) for k in before)


def test_the_dry_run_estimate_is_measured_on_a_sample_of_the_stores_own_rows(base_schema: sa.Engine) -> None:
    seeded(base_schema, 50)
    contents = memories(50)
    counting = CountingEmbedder(NEW)
    with base_schema.begin() as conn:
        found = dry_run_reembed(conn, counting, ReembedPlan()).estimate
    assert found is not None
    assert set(counting.seen) <= set(contents)  # only the store's texts, sampled
    assert 0 < found.sampled_rows <= 50
    assert found.embed_rows_per_sec > 0 and found.calibration_index_secs > 0
    assert found.in_place_secs == pytest.approx(found.data_pass_secs + found.index_secs, abs=0.02)
    assert f"embedded {found.sampled_rows} sampled rows" in found.basis()


def test_the_dry_run_counts_distinct_contents(base_schema: sa.Engine) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, [f"memory {i % 7}" for i in range(30)])
    with base_schema.begin() as conn:
        found = dry_run_reembed(conn, NEW, ReembedPlan()).estimate
    assert found is not None
    assert (found.rows, found.distinct_contents) == (30, 7)


def test_a_dry_run_of_the_model_already_in_place_measures_nothing(base_schema: sa.Engine) -> None:
    seeded(base_schema, 10)
    counting = CountingEmbedder(OLD)
    with base_schema.begin() as conn:
        summary = dry_run_reembed(conn, counting, ReembedPlan())
    assert (summary.rows_to_update, summary.estimate, counting.calls) == (0, None, 0)


def test_reembed_changes_dimension_and_search_still_works(base_schema: sa.Engine) -> None:
    seeded(base_schema, 100)
    with base_schema.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan())
    assert report.rows_updated == 100
    with base_schema.connect() as conn:
        dims = conn.execute(sa.text("SELECT DISTINCT vector_dims(embedding) FROM knowledge_nodes")).scalars().all()
        assert dims == [128]
        assert column_typmod(conn) == 128
        registry = registry_of(conn)
        assert (registry.signature.name, registry.signature.dimension) == (NEW.name, 128)
        probe_text = "memory number 5 talks about rust and async"
        hits = vector_search(conn, NEW.embed_batch([probe_text])[0], 10, model=NEW.signature())
    assert hits
    assert hits[0].content == probe_text
    assert_all_in_space(base_schema, NEW, 100)


def test_same_dimension_reembed_rewrites_every_vector(base_schema: sa.Engine) -> None:
    seeded(base_schema, 30, HashEmbedder(128))
    other = _renamed(HashEmbedder(128), "other-128")
    with base_schema.begin() as conn:
        report = run_reembed(conn, other, ReembedPlan())
    assert report.rows_updated == 30
    with base_schema.connect() as conn:
        assert column_typmod(conn) == 128
        assert registry_of(conn).signature == other.signature()
        assert index_validity(conn) is True


def test_rows_with_null_embedding_are_embedded(base_schema: sa.Engine) -> None:
    seeded(base_schema, 20, embed=False)
    with base_schema.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan())
    assert report.rows_updated == 20
    assert_all_in_space(base_schema, NEW, 20)


def test_empty_table_switches_model(base_schema: sa.Engine) -> None:
    seeded(base_schema, 0)
    with base_schema.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan())
    assert report.rows_updated == 0
    with base_schema.connect() as conn:
        assert registry_of(conn).signature == NEW.signature()
        assert column_typmod(conn) == 128
        assert index_validity(conn) is True


@pytest.mark.parametrize("count", [2 * 8 - 1, 2 * 8, 2 * 8 + 1])
def test_row_counts_at_batch_boundaries(base_schema: sa.Engine, count: int) -> None:
    seeded(base_schema, count)
    counting = CountingEmbedder(NEW)
    with base_schema.begin() as conn:
        report = run_reembed(conn, counting, ReembedPlan(batch_size=8))
    assert report.rows_updated == count
    assert counting.texts == count
    assert counting.calls == -(-count // 8)
    assert_all_in_space(base_schema, NEW, count)


def test_keeping_the_index_on_same_dimension(base_schema: sa.Engine) -> None:
    seeded(base_schema, 20, HashEmbedder(128))
    other = _renamed(HashEmbedder(128), "kept-index-128")
    with base_schema.connect() as conn:
        oid_before = conn.execute(sa.text(f"SELECT to_regclass('{HNSW_INDEX}')::oid")).scalar_one()
    with base_schema.begin() as conn:
        report = run_reembed(conn, other, ReembedPlan(drop_hnsw_first=False))
    assert report.rows_updated == 20
    assert report.index_rebuild_secs == 0.0
    with base_schema.connect() as conn:
        assert conn.execute(sa.text(f"SELECT to_regclass('{HNSW_INDEX}')::oid")).scalar_one() == oid_before


def test_dimension_change_drops_index_despite_plan(base_schema: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    seeded(base_schema, 20)
    with base_schema.begin() as conn:
        run_reembed(conn, NEW, ReembedPlan(drop_hnsw_first=False))
    assert "although drop_hnsw_first=False" in caplog.text
    assert_all_in_space(base_schema, NEW, 20)


def test_concurrent_index_rebuild(base_schema: sa.Engine) -> None:
    seeded(base_schema, 40)
    with base_schema.connect() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(concurrent_index=True, commit_batches=True, batch_size=16))
    assert report.rows_updated == 40
    assert report.index_rebuild_secs > 0
    with base_schema.connect() as conn:
        assert index_validity(conn) is True
        assert "hnsw" in (index_definition(conn) or "")
    assert_all_in_space(base_schema, NEW, 40)


def test_approach_c_forced(base_schema: sa.Engine) -> None:
    seeded(base_schema, 30)
    with base_schema.begin() as conn:
        report = run_reembed(conn, NEW, ReembedPlan(typmod_approach=TypmodApproach.NEW_COLUMN))
    assert report.rows_updated == 30
    with base_schema.connect() as conn:
        assert column_typmod(conn) == 128
        columns = (
            conn.execute(
                sa.text(
                    "SELECT attname FROM pg_attribute "
                    "WHERE attrelid = 'knowledge_nodes'::regclass AND attnum > 0 AND NOT attisdropped"
                )
            )
            .scalars()
            .all()
        )
        assert "embedding_next" not in columns
        assert index_validity(conn) is True
    assert_all_in_space(base_schema, NEW, 30)


def test_invalid_index_refuses_concurrent_run(base_schema: sa.Engine) -> None:
    seeded(base_schema, 10)
    with base_schema.begin() as conn:
        conn.execute(sa.text(f"UPDATE pg_index SET indisvalid = false WHERE indexrelid = '{HNSW_INDEX}'::regclass"))
    with base_schema.connect() as conn, pytest.raises(ReembedError, match=r"INVALID.*DROP INDEX CONCURRENTLY"):
        run_reembed(conn, NEW, ReembedPlan(concurrent_index=True, commit_batches=True))
    with base_schema.connect() as conn:
        assert registry_of(conn).signature == OLD.signature()
        assert registry_of(conn).state is ModelState.READY


def test_failure_in_atomic_mode_changes_nothing(base_schema: sa.Engine) -> None:
    seeded(base_schema, 30)
    with base_schema.connect() as conn:
        before = stored_vectors(conn)
    failing = _FailingEmbedder(NEW, fail_on_call=3)
    with pytest.raises(RuntimeError), base_schema.begin() as conn:
        run_reembed(conn, failing, ReembedPlan(batch_size=8))
    with base_schema.connect() as conn:
        after = stored_vectors(conn)
        assert column_typmod(conn) == 64
        assert index_validity(conn) is True
        assert registry_of(conn).signature == OLD.signature()
        assert registry_of(conn).state is ModelState.READY
    assert all(np.array_equal(after[k], before[k]) for k in before)


def test_search_refuses_while_reembedding(base_schema: sa.Engine) -> None:
    from vestige_embed.errors import SearchUnavailable

    seeded(base_schema, 5)
    with base_schema.begin() as conn:
        conn.execute(STORE.set_state(ModelState.REEMBEDDING))
    with base_schema.connect() as conn, pytest.raises(SearchUnavailable, match="reembedding"):
        vector_search(conn, OLD.embed_batch(["x"])[0], 3, model=OLD.signature())


def test_search_refuses_probe_of_another_dimension(base_schema: sa.Engine) -> None:
    from vestige_embed.errors import SearchUnavailable

    seeded(base_schema, 5)
    with base_schema.connect() as conn, pytest.raises(SearchUnavailable, match="64-d"):
        vector_search(conn, NEW.embed_batch(["x"])[0], 3, model=NEW.signature())


def test_search_uses_the_hnsw_index_after_reembed(base_schema: sa.Engine) -> None:
    seeded(base_schema, 200)
    with base_schema.begin() as conn:
        run_reembed(conn, NEW, ReembedPlan())
    with base_schema.connect() as conn:
        conn.execute(sa.text("SET enable_seqscan = off"))
        search = STORE.search(NEW.signature(), 5).params(probe=NEW.embed_batch(["rust"])[0])
        compiled = search.compile(conn, compile_kwargs={"literal_binds": True})
        plan = "\n".join(conn.execute(sa.text(f"EXPLAIN {compiled}")).scalars())
    assert f"Index Scan using {HNSW_INDEX}" in plan


def test_rebuilt_index_matches_the_base_revision(base_schema: sa.Engine) -> None:
    with base_schema.connect() as conn:
        original = index_definition(conn)
    seeded(base_schema, 10)
    with base_schema.begin() as conn:
        run_reembed(conn, NEW, ReembedPlan())
    with base_schema.connect() as conn:
        assert index_definition(conn) == original
        conn.execute(sa.text(f"DROP INDEX {HNSW_INDEX}"))
        conn.execute(STORE.create_index())
        assert index_definition(conn) == original


class _renamed:  # noqa: N801  (reads as a function at call sites)
    """Same vectors under another name: a different embedding space of equal size."""

    def __init__(self, inner: HashEmbedder, name: str) -> None:
        self.inner, self._name = inner, name

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def signature(self):  # type: ignore[no-untyped-def]
        return ModelSignature(self._name, self.inner.dimension, self.inner.signature().hash)

    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        return self.inner.embed_batch(texts)


class _FailingEmbedder(CountingEmbedder):
    def __init__(self, inner: HashEmbedder, fail_on_call: int) -> None:
        super().__init__(inner)
        self.fail_on_call = fail_on_call

    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        if self.calls + 1 == self.fail_on_call:
            raise RuntimeError("embedder failed on purpose")
        return super().embed_batch(texts)


class _NanEmbedder(CountingEmbedder):
    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        out = super().embed_batch(texts)
        out[0, 0] = np.nan
        return out


class _InfEmbedder(CountingEmbedder):
    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        out = super().embed_batch(texts)
        out[0, 0] = np.inf
        return out


class _ShortEmbedder(CountingEmbedder):
    """One vector fewer than texts: the shape check, not the database, must say so."""

    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        return super().embed_batch(texts)[:-1]


@pytest.mark.parametrize(
    ("wrong", "message"),
    [(_NanEmbedder, "NaN or infinite"), (_InfEmbedder, "NaN or infinite"), (_ShortEmbedder, "returned shape")],
    ids=["nan", "inf", "shape"],
)
def test_wrong_embedder_output_is_refused_before_writing(
    base_schema: sa.Engine, wrong: type[CountingEmbedder], message: str
) -> None:
    seeded(base_schema, 5)
    with base_schema.connect() as conn:
        before = stored_vectors(conn)
    with pytest.raises(ReembedError, match=message), base_schema.begin() as conn:
        run_reembed(conn, wrong(NEW), ReembedPlan())
    with base_schema.connect() as conn:
        after = stored_vectors(conn)
        assert registry_of(conn).signature == OLD.signature()
    assert all(np.array_equal(after[k], before[k]) for k in before)


def test_target_wider_than_hnsw_allows_is_refused_before_writing(base_schema: sa.Engine) -> None:
    seeded(base_schema, 5)
    counting = CountingEmbedder(HashEmbedder(2001))
    with pytest.raises(ReembedError, match="at most 2000"), base_schema.begin() as conn:
        run_reembed(conn, counting, ReembedPlan())
    assert counting.calls == 0


def test_atomic_run_makes_writers_wait_until_it_ends(base_schema: sa.Engine) -> None:
    import threading

    seeded(base_schema, 20)
    gate, release = threading.Event(), threading.Event()

    class Gated(CountingEmbedder):
        def embed_batch(self, texts):  # type: ignore[no-untyped-def]
            gate.set()
            release.wait(timeout=30)
            return super().embed_batch(texts)

    def run() -> None:
        with base_schema.begin() as conn:
            run_reembed(conn, Gated(NEW), ReembedPlan())

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert gate.wait(timeout=30)
        with base_schema.connect() as conn:
            conn.execute(sa.text("SET lock_timeout = '200ms'"))
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                conn.execute(sa.text("INSERT INTO knowledge_nodes (content) VALUES ('written during the run')"))
    finally:
        release.set()
        worker.join(timeout=60)
    assert_all_in_space(base_schema, NEW, 20)


def test_search_refuses_a_probe_of_another_model_of_the_same_size(base_schema: sa.Engine) -> None:
    from vestige_embed.errors import SearchUnavailable

    seeded(base_schema, 5, HashEmbedder(128))
    other = _renamed(HashEmbedder(128), "other-128")
    probe = other.embed_batch(["memory number 1 talks about rust and async"])[0]
    with base_schema.connect() as conn, pytest.raises(SearchUnavailable, match="embedded with other-128"):
        vector_search(conn, probe, 3, model=other.signature())


class _ZeroEmbedder(CountingEmbedder):
    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        out = super().embed_batch(texts)
        out[1:3] = 0.0
        return out


def test_zero_vectors_are_refused_with_their_count(base_schema: sa.Engine) -> None:
    seeded(base_schema, 5)
    with pytest.raises(ReembedError, match="returned 2 zero vector"), base_schema.begin() as conn:
        run_reembed(conn, _ZeroEmbedder(NEW), ReembedPlan())


def test_a_same_size_change_indexes_only_the_new_vectors(base_schema: sa.Engine) -> None:
    """Built in the transaction that rewrote every row, the index would also take the old
    versions (the old model's vectors): about twice the entries of a build over live rows."""
    with base_schema.begin() as conn:
        seed_store(conn, OtherModel64(), memories(400))  # type: ignore[arg-type]
    with base_schema.begin() as conn:
        assert run_reembed(conn, HashEmbedder(64), ReembedPlan()).strategy == "in_place"
    size = sa.text("SELECT pg_relation_size('idx_knowledge_nodes_embedding_hnsw')")
    with base_schema.connect() as conn:
        after_change = conn.execute(size).scalar_one()
        conn.execute(sa.text("REINDEX INDEX idx_knowledge_nodes_embedding_hnsw"))
        rebuilt = conn.execute(size).scalar_one()
        conn.commit()
    assert after_change <= 1.2 * rebuilt, (after_change, rebuilt)
    assert_all_in_space(base_schema, HashEmbedder(64), 400)


class _Totals(NoProgress):
    """A progress display that keeps the totals it is started with."""

    def __init__(self) -> None:
        self.totals: list[int] = []

    def start(self, total: int) -> None:
        self.totals.append(total)


@pytest.mark.parametrize("plan", [ReembedPlan(), ReembedPlan(use_staged=False), ReembedPlan(prebuild_index=False)])
def test_an_in_place_run_counts_its_rows_before_it_locks_the_table(base_schema: sa.Engine, plan: ReembedPlan) -> None:
    """The progress total is no scan that writers wait for."""
    seeded(base_schema, 40)
    statements: list[str] = []
    progress = _Totals()
    with base_schema.connect() as conn:
        sa.event.listen(conn, "before_cursor_execute", lambda *args: statements.append(args[2]))
        report = run_reembed(conn, NEW, plan, progress=progress)
        conn.commit()
    locked = next(i for i, s in enumerate(statements) if s.startswith("LOCK TABLE knowledge_nodes"))
    assert [s for s in statements[locked:] if "count(" in s] == []
    assert (progress.totals, report.rows_updated) == ([40], 40)
    assert_all_in_space(base_schema, NEW, 40)
