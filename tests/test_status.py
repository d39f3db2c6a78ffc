"""`vestige migrate status`: never a traceback, and every mismatch named with its fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from tests.conftest import ROOT
from tests.helpers import memories, seed_store
from vestige_embed import HashEmbedder, stage
from vestige_embed.cli.main import EXIT_OK, main
from vestige_embed.target import DEFAULT_TARGET

ALEMBIC_INI = str(ROOT / "alembic.ini")


def status(capsys: pytest.CaptureFixture[str], db_url: str, *, config: str = ALEMBIC_INI) -> dict[str, Any]:
    capsys.readouterr()
    code = main(["migrate", "status", "--json", "--postgres-url", db_url, "--config", config])
    out = capsys.readouterr()
    assert code == EXIT_OK, out.err
    found: dict[str, Any] = json.loads(out.out)
    return found


def problems_with(found: dict[str, Any], words: str) -> list[str]:
    return [p for p in found["problems"] if words in p]


def seeded(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        seed_store(conn, HashEmbedder(256), memories(8))


def test_a_store_behind_head_has_only_the_pending_revisions_to_report(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = status(capsys, db_url)
    assert found["alembic"]["model"] == "vestige/hash-256"
    assert found["problems"] == [f"revisions {found['alembic']['head']} not applied yet: run `alembic upgrade head`"]


def test_without_the_registry_status_names_the_missing_row_instead_of_crashing(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with base_schema.begin() as conn:
        conn.execute(sa.text("DROP TABLE embedding_model"))
    found = status(capsys, db_url)
    assert found["registry"] is None and found["search_may_be_served"] is False
    assert problems_with(found, "has no row in embedding_model")


def test_a_missing_index_is_reported_absent_with_the_statement_that_builds_it(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with base_schema.begin() as conn:
        conn.execute(sa.text(f"DROP INDEX {DEFAULT_TARGET.index}"))
    found = status(capsys, db_url)
    assert found["index"] == {"name": DEFAULT_TARGET.index, "present": False, "valid": None}
    (problem,) = problems_with(found, "is missing")
    assert f"CREATE INDEX CONCURRENTLY {DEFAULT_TARGET.index}" in problem


def test_a_registry_model_other_than_the_revisions_is_pointed_out_with_both_ways_back(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded(base_schema)
    assert main(["migrate", "reembed", "--model", "vestige/hash-64", "--dimension", "64", "--no-confirm",
                 "--postgres-url", db_url]) == EXIT_OK  # fmt: skip
    found = status(capsys, db_url)
    (problem,) = problems_with(found, "but revision 0001 leaves knowledge_nodes.embedding on vestige/hash-256")
    assert "--model vestige/hash-256 --dimension 256" in problem
    assert "vestige migrate revision --model vestige/hash-64" in problem


def test_a_revision_the_scripts_do_not_have_is_pointed_out(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with base_schema.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    found = status(capsys, db_url)
    assert found["alembic"]["current"] == "f00dfeed"
    assert problems_with(found, "at revision f00dfeed, which")


def test_an_unfinished_change_is_pointed_out_with_the_command_that_resumes_it(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with base_schema.begin() as conn:
        conn.execute(sa.text("UPDATE embedding_model SET state = 'reembedding'"))
    assert problems_with(status(capsys, db_url), "has not finished (registry state 'reembedding')")


def test_vectors_staged_for_the_model_already_served_are_pointed_out_with_the_drop_command(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded(base_schema)
    with base_schema.connect() as conn:
        stage(conn, HashEmbedder(256))
    (problem,) = problems_with(status(capsys, db_url), "the model the store already serves")
    assert "vestige migrate stage --drop" in problem


def test_a_column_resized_outside_vestige_is_pointed_out(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with base_schema.begin() as conn:
        conn.execute(sa.text(f"DROP INDEX {DEFAULT_TARGET.index}"))
        conn.execute(sa.text("ALTER TABLE knowledge_nodes ALTER COLUMN embedding TYPE vector(64)"))
    assert problems_with(status(capsys, db_url), "is vector(64) but the registry says vestige/hash-256 makes 256-d")


def test_an_empty_database_reports_the_store_absent_and_the_upgrade_that_creates_it(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    found = status(capsys, db_url)
    assert found["store"] == "absent"
    assert found["alembic"]["current"] is None
    assert problems_with(found, "no Alembic revision yet: run `alembic upgrade head`")


def test_without_an_alembic_ini_the_store_is_still_reported(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    found = status(capsys, db_url, config=str(tmp_path / "alembic.ini"))
    assert found["registry"]["name"] == "vestige/hash-256"
    assert problems_with(found, "alembic.ini not found: run from the project folder or pass --config")


def test_an_up_to_date_store_has_no_problems(
    alembic_config: Config, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command.upgrade(alembic_config, "head")
    found = status(capsys, db_url)
    assert found["problems"] == []
    assert found["alembic"]["current"] == found["alembic"]["head"]


def test_an_unfinished_change_without_its_index_is_not_told_to_build_one_by_hand(
    base_schema: sa.Engine, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with base_schema.begin() as conn:
        conn.execute(sa.text("UPDATE embedding_model SET state = 'reembedding'"))
        conn.execute(sa.text(f"DROP INDEX {DEFAULT_TARGET.index}"))
    found = status(capsys, db_url)
    assert problems_with(found, "has not finished")
    assert not problems_with(found, "CREATE INDEX")


def test_status_without_a_database_creates_no_embedded_cluster(tmp_path: Path) -> None:
    from tests.cli_helpers import run_tool

    pgdata = tmp_path / "pgdata"
    result = run_tool("vestige", "migrate", "status", url=None, cwd=tmp_path, VESTIGE_PGDATA=str(pgdata))
    assert result.returncode == 2
    assert "no database configured" in result.stderr and "Nothing was created" in result.stderr
    assert not pgdata.exists()


def test_the_embedded_data_folder_is_the_projects_wherever_the_command_runs(tmp_path: Path) -> None:
    from tests.cli_helpers import run_tool

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "alembic.ini").write_text((ROOT / "alembic.ini").read_text())
    result = run_tool("vestige", "migrate", "status", "--config", str(project / "alembic.ini"), url=None, cwd=elsewhere)
    assert result.returncode == 2
    assert f"no data in {project / '.vestige' / 'pgdata'}" in result.stderr
    assert not (elsewhere / ".vestige").exists()


def test_default_folders_are_the_projects_and_given_ones_the_shells(tmp_path: Path) -> None:
    from vestige_embed.settings.config import load_settings

    settings = load_settings(environ={}, project=tmp_path)
    state = tmp_path / ".vestige"
    assert (settings.pgdata, settings.models_dir) == (state / "pgdata", state / "models")
    given = load_settings(environ={"VESTIGE_MODELS_DIR": "models"}, project=tmp_path)
    assert given.models_dir == Path("models").absolute()
