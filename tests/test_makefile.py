"""The Makefile targets a release pipeline calls, run with `make` against a test database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import NEXT_REVISION, ROOT
from tests.helpers import (
    column_typmod,
    memories,
    registry_of,
    seed_store,
)
from vestige_embed import HashEmbedder
from vestige_embed.settings.config import DATABASE_URL_ENV

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
VENV = Path(sys.executable).parent.parent


def make(*args: str, url: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`make TARGET` with this test run's virtualenv (DEPS= skips the install step)."""
    env = {**os.environ, DATABASE_URL_ENV: url}
    return subprocess.run(
        ["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), f"VENV={VENV}", "DEPS=", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )  # fmt: skip


@pytest.fixture
def seeded(base_schema: sa.Engine) -> sa.Engine:
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(256), memories(20))
    return base_schema


def registry_model(engine: sa.Engine) -> tuple[str, int]:
    with engine.connect() as conn:
        signature = registry_of(conn).signature
        assert column_typmod(conn) == signature.dimension
    return signature.name, signature.dimension


@pytest.mark.slow
def test_make_upgrade_and_downgrade(seeded: sa.Engine, db_url: str) -> None:
    up = make("upgrade", url=db_url)
    assert up.returncode == 0, up.stderr
    assert registry_model(seeded) == (MINILM, 384)
    down = make("downgrade", "TO=0001", url=db_url)
    assert down.returncode == 0, down.stderr
    assert registry_model(seeded) == ("vestige/hash-256", 256)


def test_make_status_prints_the_registry(seeded: sa.Engine, db_url: str) -> None:
    result = make("status", url=db_url)
    assert result.returncode == 0, result.stderr
    assert "registry.name: vestige/hash-256" in result.stdout
    assert "registry.state: ready" in result.stdout
    assert "alembic.current: 0001" in result.stdout


def test_make_sql_prints_the_offline_script_on_stdout(db_url: str) -> None:
    result = make("sql", "FROM=0001", url=db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().startswith("BEGIN;")
    assert "DO $vestige_guard$" in result.stdout
    assert "UPDATE alembic_version SET version_num='0002'" in result.stdout


@pytest.mark.slow
def test_make_stage_then_upgrade_uses_the_staged_vectors(seeded: sa.Engine, db_url: str) -> None:
    staged = make("stage", f"MODEL={MINILM}", "DIM=384", url=db_url)
    assert staged.returncode == 0, staged.stderr
    assert "rows_staged 20" in staged.stdout
    up = make("upgrade", url=db_url)
    assert up.returncode == 0, up.stderr
    assert "copied 20 staged vectors" in up.stderr  # staging covers the store: built before the window
    assert registry_model(seeded) == (MINILM, 384)


def test_make_reembed_runs_the_operator_command(seeded: sa.Engine, db_url: str) -> None:
    result = make("reembed", "MODEL=vestige/hash-64", "DIM=64", "ARGS=--no-confirm --json", url=db_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows_updated"] == 20
    assert registry_model(seeded) == ("vestige/hash-64", 64)


@pytest.mark.parametrize(
    ("target", "usage"),
    [
        ("reembed", "usage: make reembed MODEL=name DIM=n"),
        ("stage", "usage: make stage MODEL=name [DIM=n]"),
        ("revision", "usage: make revision MODEL=name"),
    ],
)
def test_a_target_without_its_model_is_a_usage_error_before_any_other_work(
    db_url: str, target: str, usage: str
) -> None:
    result = make(target, url=db_url)
    assert result.returncode != 0
    assert usage in result.stderr
    assert "models folder ready" not in result.stderr + result.stdout


def test_make_without_a_target_lists_the_targets(db_url: str) -> None:
    result = make(url=db_url)
    assert result.returncode == 0, result.stderr
    assert {line.split()[0] for line in result.stdout.splitlines()} >= {"demo", "test", "bench-quick", "help"}


def test_make_revision_writes_a_model_change(tmp_path: Path, db_url: str) -> None:
    for name in ("alembic.ini", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    result = make("revision", "MODEL=BAAI/bge-small-en-v1.5", "DIM=384", url=db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    created = list((tmp_path / "migrations" / "versions").glob(f"{NEXT_REVISION}_*.py"))
    assert len(created) == 1
    assert '"model": "BAAI/bge-small-en-v1.5"' in created[0].read_text()
