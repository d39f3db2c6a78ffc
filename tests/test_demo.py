"""The demo's corpus and the point of the whole job: a better model gives better search."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.conftest import MODELS_DIR
from tests.helpers import STORE
from vestige_embed import ReembedPlan, resolve_embedder, run_reembed
from vestige_embed.demo.corpus import QUERIES, Doc, stdlib_docs
from vestige_embed.demo.runner import HIT_RATE_K, embed_missing, hit_rate, load_corpus

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_corpus_is_thousands_of_stdlib_docstrings_with_every_answer_present() -> None:
    docs = stdlib_docs()
    names = {d.qualname for d in docs}
    assert len(docs) > 2000
    assert len(QUERIES) >= 10
    for query in QUERIES:
        assert names & set(query.answers), query.text


def test_loading_the_corpus_twice_does_not_duplicate_rows(base_schema: sa.Engine) -> None:
    docs = stdlib_docs()[:300]
    with base_schema.begin() as conn:
        assert load_corpus(conn, docs) == 300
        assert load_corpus(conn, docs) == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(STORE.table)).scalar_one() == 300


def labelled_subset() -> list[Doc]:
    """The docstrings of the modules that hold the queries' answers: every answer, and
    hundreds of near misses from the same modules (a hard test in a few seconds)."""
    modules = {answer.split(".")[0] for query in QUERIES for answer in query.answers}
    return [d for d in stdlib_docs() if d.qualname.split(".")[0] in modules]


def test_minilm_finds_the_right_answer_more_often_than_hashing(
    base_schema: sa.Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = labelled_subset()
    with base_schema.begin() as conn:
        load_corpus(conn, docs)
        hashing = resolve_embedder("vestige/hash-256", 256)
        embed_missing(conn, hashing)
        hash_hits = hit_rate(conn, hashing)
        minilm = resolve_embedder(MINILM, 384, models_dir=MODELS_DIR)
        run_reembed(conn, minilm, ReembedPlan())
        minilm_hits = hit_rate(conn, minilm)
    with capsys.disabled():
        print(
            f"\n[{len(docs)} docstrings of the answers' modules] right answer in top {HIT_RATE_K} of "
            f"{len(QUERIES)} queries: vestige/hash-256 {hash_hits}, {MINILM} {minilm_hits}"
        )
    assert minilm_hits > hash_hits


def test_demo_refuses_a_configured_database() -> None:
    from tests.cli_helpers import run_tool

    result = run_tool("vestige", "demo", url="postgresql://someone:s3cret@prod.example/memories")
    assert result.returncode == 2
    assert "only runs on the embedded server" in result.stderr
    assert "s3cret" not in result.stderr
