"""The window is seconds by default: when staging covers the store, the new column and its
HNSW index are built before it, whatever the plan's `concurrent_index` says."""

from __future__ import annotations

import logging
import uuid

import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_tool
from tests.helpers import STORE, autocommit_block, index_validity, memories, registry_of, seed_store
from vestige_embed import HashEmbedder, ReembedPlan, run_reembed, stage
from vestige_embed.errors import ConfigError
from vestige_embed.settings.config import load_settings

OLD, NEW = HashEmbedder(256), HashEmbedder(128)
ROWS, BATCH = 40, 8
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def staged(base_schema: sa.Engine) -> sa.Engine:
    """A store whose every row has a fresh staged vector for NEW."""
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(ROWS))
    with base_schema.connect() as conn:
        stage(conn, NEW, batch_size=BATCH)
    return base_schema


def atomic_change(engine: sa.Engine, plan: ReembedPlan, *, block: bool = True) -> str:
    with engine.connect() as conn:
        report = run_reembed(conn, NEW, plan, autocommit_block=autocommit_block(conn) if block else None)
        conn.commit()
    with engine.connect() as conn:
        assert registry_of(conn).signature == NEW.signature()
        assert index_validity(conn) is True
    return report.strategy


def test_a_fully_staged_change_builds_the_index_before_the_window(staged: sa.Engine) -> None:
    assert atomic_change(staged, ReembedPlan(batch_size=BATCH)) == "staged_swap"


def test_prebuild_index_off_builds_the_index_inside_the_window(staged: sa.Engine) -> None:
    assert atomic_change(staged, ReembedPlan(batch_size=BATCH, prebuild_index=False)) == "in_place"


def test_a_partly_staged_change_says_what_the_window_holds(staged: sa.Engine, caplog: pytest.LogCaptureFixture) -> None:
    with staged.begin() as conn:
        conn.execute(STORE.table.insert(), [{"id": uuid.uuid4(), "content": f"new {i}"} for i in range(BATCH + 1)])
    with caplog.at_level(logging.INFO, logger="vestige_embed"):
        assert atomic_change(staged, ReembedPlan(batch_size=BATCH)) == "in_place"
    assert f"the window embeds {BATCH + 1} rows and builds the HNSW index over {ROWS + BATCH + 1}" in caplog.text
    assert f"{BATCH + 1} of {ROWS + BATCH + 1} rows have no fresh staged vector" in caplog.text


def test_an_atomic_change_without_an_autocommit_block_says_why(
    staged: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vestige_embed"):
        assert atomic_change(staged, ReembedPlan(batch_size=BATCH), block=False) == "in_place"
    assert "no autocommit block for CREATE INDEX CONCURRENTLY" in caplog.text


@pytest.mark.slow
def test_the_operator_turns_prebuilding_off_for_an_alembic_upgrade(base_schema: sa.Engine, db_url: str) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, OLD, memories(10))
    staged_run = run_tool("vestige", "migrate", "stage", "--model", MINILM, url=db_url)
    assert staged_run.returncode == 0, staged_run.stderr
    up = run_tool("alembic", "upgrade", "head", url=db_url, VESTIGE_EMBED_PREBUILD_INDEX="0")
    assert up.returncode == 0, up.stderr
    assert "prebuild_index is off" in up.stderr
    assert "applied 10 staged vectors" in up.stderr


def test_a_prebuild_setting_that_is_not_a_switch_is_refused() -> None:
    assert load_settings(environ={"VESTIGE_EMBED_PREBUILD_INDEX": "off"}).prebuild_index is False
    assert load_settings(environ={}).prebuild_index is True
    with pytest.raises(ConfigError, match=r"VESTIGE_EMBED_PREBUILD_INDEX must be 1 or 0 .*got 'sometimes'"):
        load_settings(environ={"VESTIGE_EMBED_PREBUILD_INDEX": "sometimes"})
