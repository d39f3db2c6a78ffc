"""The `vestige` command, run as a new user would: the real entry point in a subprocess."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_tool
from tests.conftest import HEAD
from tests.helpers import (
    column_typmod,
    memories,
    registry_of,
    seed_store,
    staged_rows,
    stored_vectors,
)
from vestige_embed import HashEmbedder
from vestige_embed.cli.banner import BANNER, BANNER_NO_WAIT, warn_and_wait
from vestige_embed.target import ModelState

MINILM = "sentence-transformers/all-MiniLM-L6-v2"

HASH256 = ["--model", "vestige/hash-256", "--dimension", "256"]
HASH64 = ["--model", "vestige/hash-64", "--dimension", "64"]


def seeded(engine: sa.Engine, count: int = 40) -> None:
    with engine.begin() as conn:
        seed_store(conn, HashEmbedder(256), memories(count))


def test_reembed_to_the_registered_model_is_a_no_op(base_schema: sa.Engine, db_url: str) -> None:
    seeded(base_schema)
    result = run_tool("vestige", "migrate", "reembed", *HASH256, "--no-confirm", url=db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rows_updated 0 ")
    assert "WARN:" not in result.stderr


def test_dry_run_prints_aligned_lines_with_the_basis_of_its_estimate(base_schema: sa.Engine, db_url: str) -> None:
    seeded(base_schema)
    result = run_tool("vestige", "migrate", "reembed", *HASH64, "--dry-run", url=db_url)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    report = lines[lines.index(next(line for line in lines if line.startswith("model "))) :]
    parsed = [re.match(r"^(\S.*?)\s{2,}(\S.*)$", line) for line in report]
    assert all(parsed), report
    assert [m[1] for m in parsed[:3]] == ["model", "column type change", "rows to update"]  # type: ignore[index]
    assert len({m.start(2) for m in parsed}) == 1  # type: ignore[union-attr]
    assert "embedded" in report[-1] and "sampled rows" in report[-1]
    assert "{" not in result.stderr and "ModelSignature(" not in result.stderr


def test_dry_run_json_is_valid_and_writes_nothing(base_schema: sa.Engine, db_url: str) -> None:
    seeded(base_schema)
    with base_schema.connect() as conn:
        before = stored_vectors(conn)
    result = run_tool("vestige", "migrate", "reembed", *HASH64, "--dry-run", "--json", url=db_url)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_to_update"] == 40
    assert summary["embedder_batches"] == 1
    assert summary["would_alter_typmod"] is True
    assert summary["target_signature"]["name"] == "vestige/hash-64"
    assert summary["estimate"]["rows"] == 40
    assert summary["estimated_walltime_secs"] == summary["estimate"]["staged_secs"]
    with base_schema.connect() as conn:
        after = stored_vectors(conn)
        assert column_typmod(conn) == 256
        assert registry_of(conn).signature == HashEmbedder(256).signature()
    assert all((after[k] == before[k]).all() for k in before)


def test_reembed_prints_banner_batches_and_report(base_schema: sa.Engine, db_url: str) -> None:
    seeded(base_schema, 40)
    result = run_tool("vestige", "migrate", "reembed", *HASH64, "--batch-size", "16", "--no-confirm", url=db_url)
    assert result.returncode == 0, result.stderr
    assert BANNER_NO_WAIT in result.stderr
    assert "Ctrl-C" not in result.stderr
    assert "reembed: wrote batch 3 (8 rows)" in result.stderr
    fields = result.stdout.split()
    assert fields[:2] == ["rows_updated", "40"]
    assert fields[2::2] == ["duration_secs", "index_rebuild_secs"]
    with base_schema.connect() as conn:
        registry = registry_of(conn)
    assert (registry.signature, registry.state) == (HashEmbedder(64).signature(), ModelState.READY)


@pytest.mark.parametrize(("flags", "strategy"), [((), "staged_swap"), (("--no-prebuild-index",), "in_place")])
def test_reembed_builds_the_index_before_the_window_unless_told_not_to(
    base_schema: sa.Engine, db_url: str, flags: tuple[str, ...], strategy: str
) -> None:
    seeded(base_schema, 20)
    result = run_tool("vestige", "migrate", "reembed", *HASH64, *flags, "--no-confirm", "--json", url=db_url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["strategy"] == strategy


def test_wrong_dimension_fails_before_connecting() -> None:
    unreachable = "postgresql://nobody:hunter2@127.0.0.1:9/nowhere"
    result = run_tool(
        "vestige",
        "migrate",
        "reembed",
        "--postgres-url",
        unreachable,
        "--model",
        "vestige/hash-64",
        "--dimension",
        "768",
        "--no-confirm",
        url=None,
    )
    assert result.returncode == 2
    assert "embedder 'vestige/hash-64' produces dimension 64, --dimension was 768" in result.stderr


@pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="has CUDA")
def test_a_gpu_asked_for_on_a_cpu_onnxruntime_fails_before_connecting() -> None:
    unreachable = "postgresql://nobody:hunter2@127.0.0.1:9/nowhere"
    result = run_tool("vestige", "migrate", "stage", "--model", MINILM, "--device", "cuda", url=unreachable)
    assert result.returncode == 2
    assert "device 'cuda' asked for, but this onnxruntime has no CUDAExecutionProvider" in result.stderr
    assert "Install onnxruntime-gpu" in result.stderr


def test_missing_flag_is_a_usage_error() -> None:
    result = run_tool("vestige", "migrate", "reembed", "--model", "vestige/hash-64", url=None)
    assert result.returncode == 2
    assert "--dimension" in result.stderr


def test_zero_threads_is_a_usage_error() -> None:
    result = run_tool("vestige", "migrate", "stage", "--model", "vestige/hash-64", "--threads", "0", url=None)
    assert result.returncode == 2
    assert "--threads: must be at least 1, got 0" in result.stderr


def test_a_bad_thread_count_in_the_environment_is_named_before_any_work() -> None:
    args = ("migrate", "stage", "--model", "vestige/hash-64")
    result = run_tool("vestige", *args, url=None, VESTIGE_EMBED_THREADS="all")
    assert result.returncode == 2
    assert "VESTIGE_EMBED_THREADS must be a whole number of threads" in result.stderr


@pytest.mark.parametrize(
    ("unreachable", "shown"),
    [
        ("postgresql://nobody:hunter2@127.0.0.1:9/nowhere", "nobody:***@127.0.0.1:9/nowhere"),
        ("postgresql://nobody@/nowhere?host=/tmp/no-such-socket&password=hunter2&port=9", "password=***"),
    ],
    ids=["in the authority", "as a URL parameter"],
)
@pytest.mark.parametrize(
    "command",
    [["status"], ["reembed", *HASH64, "--dry-run", "--json"], ["reembed", *HASH64, "--no-confirm"], ["stage", *HASH64]],
    ids=["status", "dry-run-json", "reembed", "stage"],
)
def test_connection_failure_exits_1_without_printing_the_password(
    unreachable: str, shown: str, command: list[str]
) -> None:
    result = run_tool("vestige", "migrate", *command, "--postgres-url", unreachable, url=None)
    assert result.returncode == 1
    assert "hunter2" not in result.stderr + result.stdout
    assert shown in result.stderr


def test_foreign_driver_url_is_refused_with_the_fix() -> None:
    result = run_tool("vestige", "migrate", "status", "--postgres-url", "mysql://u:p@h/db", url=None)
    assert result.returncode == 2
    assert "postgresql+psycopg://" in result.stderr


def test_status_json_reports_registry_revision_column_index_rows(base_schema: sa.Engine, db_url: str) -> None:
    seeded(base_schema, 12)
    with base_schema.begin() as conn:
        conn.execute(sa.text("UPDATE knowledge_nodes SET embedding = NULL WHERE content LIKE '%number 1%'"))
    result = run_tool("vestige", "migrate", "status", "--json", url=db_url)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["alembic"] == {"current": "0001", "head": HEAD, "model": "vestige/hash-256"}
    assert status["registry"]["name"] == "vestige/hash-256"
    assert status["registry"]["state"] == "ready"
    assert status["column_dimension"] == 256
    assert status["index"]["present"] and status["index"]["valid"]
    assert (status["rows"], status["rows_without_embedding"]) == (12, 3)


def test_stage_drop_removes_the_staging_table(base_schema: sa.Engine, db_url: str) -> None:
    seeded(base_schema, 10)
    assert run_tool("vestige", "migrate", "stage", *HASH64, url=db_url).returncode == 0
    with base_schema.connect() as conn:
        assert staged_rows(conn) == 10
    dropped = run_tool("vestige", "migrate", "stage", "--drop", url=db_url)
    assert dropped.returncode == 0, dropped.stderr
    with base_schema.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('knowledge_nodes_embedding_staging')")).scalar() is None


def test_stage_with_both_model_and_drop_is_a_usage_error() -> None:
    result = run_tool("vestige", "migrate", "stage", *HASH64, "--drop", url=None)
    assert result.returncode == 2
    assert "--model MODEL (to stage) or --drop" in result.stderr


def test_an_empty_database_url_is_an_error_not_the_embedded_server() -> None:
    result = run_tool("vestige", "migrate", "status", url="")
    assert result.returncode == 2
    assert "VESTIGE_DATABASE_URL is set but empty" in result.stderr


def test_a_huge_model_name_is_cut_in_the_message() -> None:
    result = run_tool("vestige", "migrate", "reembed", "--model", "x" * 100_000, "--dimension", "8", url=None)
    assert result.returncode == 2
    assert "(100000 characters)" in result.stderr
    assert len(result.stderr) < 5_000


def test_status_behind_a_lock_fails_after_its_lock_timeout_with_the_fix(base_schema: sa.Engine, db_url: str) -> None:
    with base_schema.connect() as holder:
        holder.execute(sa.text("LOCK TABLE knowledge_nodes IN ACCESS EXCLUSIVE MODE"))
        result = run_tool("vestige", "migrate", "status", "--lock-timeout", "300ms", url=db_url, timeout=60)
        holder.rollback()
    assert result.returncode == 1
    assert "lock timeout" in result.stderr
    assert "another transaction holds the table" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_non_numeric_port_is_a_usage_error() -> None:
    result = run_tool("vestige", "migrate", "status", "--postgres-url", "postgresql://u@h:abc/db", url=None)
    assert result.returncode == 2
    assert "not a valid URL" in result.stderr


def test_the_banner_offers_the_ctrl_c_window_only_when_it_waits() -> None:
    waited, skipped = io.StringIO(), io.StringIO()
    warn_and_wait(confirm=True, stream=waited, seconds=0)
    warn_and_wait(confirm=False, stream=skipped, seconds=0)
    assert waited.getvalue().strip() == BANNER
    assert skipped.getvalue().strip() == BANNER_NO_WAIT
    assert "Ctrl-C" in BANNER and "Ctrl-C" not in BANNER_NO_WAIT


def test_version_prints_the_installed_version() -> None:
    result = run_tool("vestige", "--version", url=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vestige {importlib.metadata.version('vestige-embed')}"


def test_a_model_that_cannot_be_loaded_is_a_failure_with_the_fix(
    base_schema: sa.Engine, db_url: str, tmp_path: Path
) -> None:
    seeded(base_schema, 5)
    result = run_tool(
        "vestige",
        "migrate",
        "stage",
        "--model",
        "BAAI/bge-small-en-v1.5",
        url=db_url,
        HF_HUB_OFFLINE="1",
        FASTEMBED_CACHE_PATH=str(tmp_path),
        VESTIGE_MODELS_DIR=str(tmp_path),
    )
    assert result.returncode == 1, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "could not load BAAI/bge-small-en-v1.5" in error[0]
    assert "allow downloads (unset HF_HUB_OFFLINE)" in error[0] and ".." not in error[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("flags", [(), ("--verbose",)])
def test_a_failure_is_one_line_unless_verbose_asks_for_the_traceback(flags: tuple[str, ...]) -> None:
    unreachable = "postgresql://nobody:hunter2@127.0.0.1:9/nowhere"
    result = run_tool("vestige", *flags, "migrate", "status", "--postgres-url", unreachable, url=None)
    assert result.returncode == 1
    assert "error: database:" in result.stderr
    assert ("Traceback" in result.stderr) == bool(flags)
    assert "hunter2" not in result.stderr


def _commands(parser: argparse.ArgumentParser, path: str = "vestige") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{path} {name}")


def test_every_command_describes_itself_and_every_option_has_help() -> None:
    from vestige_embed.cli.main import _parser

    for path, parser in _commands(_parser()):
        assert parser.description and parser.epilog, path
        assert "exit codes:" in parser.epilog, path
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{path} {action.option_strings}"


def test_the_database_line_is_a_url_psql_takes_as_printed(base_schema: sa.Engine, db_url: str) -> None:
    import subprocess

    from tests.helpers import PSQL

    result = run_tool("vestige", "migrate", "status", url=db_url)
    printed = next(line for line in result.stderr.splitlines() if line.startswith("database: ")).split(" ", 1)[1]
    assert printed.startswith("postgresql://")
    psql = subprocess.run([str(PSQL), "-X", "-At", printed, "-c", "SELECT count(*) FROM knowledge_nodes"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (psql.returncode, psql.stdout.strip()) == (0, "0"), psql.stderr


@pytest.mark.parametrize("action", [["reembed", *HASH64, "--no-confirm"], ["stage", *HASH64]], ids=["reembed", "stage"])
def test_a_database_without_the_schema_is_one_line_with_the_upgrade_to_run(db_url: str, action: list[str]) -> None:
    result = run_tool("vestige", "migrate", *action, url=db_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 2  # the database line, the error
    assert "`alembic upgrade head` on this database" in result.stderr


def test_ctrl_c_in_the_banners_wait_says_nothing_changed(base_schema: sa.Engine, db_url: str) -> None:
    import os
    import signal
    import subprocess

    from tests.cli_helpers import BIN
    from tests.helpers import read_until
    from vestige_embed.settings.config import DATABASE_URL_ENV

    seeded(base_schema, 5)
    env = {**os.environ, DATABASE_URL_ENV: db_url}
    # A runner started in the background (`cmd &`) ignores SIGINT, and its children inherit
    # that: give the tool the default disposition, as a terminal would.
    with subprocess.Popen(
        [str(BIN / "vestige"), "migrate", "reembed", *HASH64],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as proc:
        assert proc.stderr is not None
        read_until(proc.stderr, "to abort.")
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
    assert proc.returncode == 1
    assert "aborted (Ctrl-C): the store is as it was" in rest and "Traceback" not in rest
    with base_schema.connect() as conn:
        assert registry_of(conn).signature == HashEmbedder(256).signature()


@pytest.mark.slow
def test_a_sql_ascii_database_is_read_as_utf8_text(engine: sa.Engine, db_url: str) -> None:
    name = f"ascii_{uuid.uuid4().hex[:8]}"
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        ascii_only = "ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        conn.execute(sa.text(f"CREATE DATABASE {name} {ascii_only}"))
    url = sa.make_url(db_url).set(database=name).render_as_string(hide_password=False)
    try:
        assert run_tool("alembic", "upgrade", "0001", url=url).returncode == 0
        result = run_tool("vestige", "migrate", "status", "--json", url=url)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["registry"]["name"] == "vestige/hash-256"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))


def test_an_unknown_database_is_one_line_naming_it(db_url: str) -> None:
    missing = sa.make_url(db_url).set(database="no_such_store").render_as_string(hide_password=False)
    result = run_tool("vestige", "migrate", "status", url=missing)
    assert result.returncode == 1
    assert 'database "no_such_store" does not exist' in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 3


def test_demo_outside_a_checkout_says_where_it_runs_without_a_traceback(tmp_path: Path) -> None:
    result = run_tool("vestige", "demo", url=None, cwd=tmp_path)
    assert result.returncode == 2
    assert "alembic.ini not found: the demo applies vestige-embed's own migrations" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / ".vestige").exists()
