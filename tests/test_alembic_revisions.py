"""Model changes as Alembic revisions, through the real `alembic` and `vestige` commands."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tests.cli_helpers import run_tool
from tests.conftest import HEAD, MODELS_DIR, NEXT_REVISION, ROOT
from tests.helpers import (
    column_typmod,
    registry_of,
    seed_store,
    stored_vectors,
)
from vestige_embed import HashEmbedder, resolve_embedder
from vestige_embed.target import ModelState

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "PostgreSQL stores the memories",
    "pgvector adds an HNSW index",
    "The cat sat on the mat",
    "Rust and async go together",
    "",
    "Grüße aus Köln",
] * 5


def assert_store_on(engine: sa.Engine, model: str, dimension: int) -> None:
    embedder = resolve_embedder(model, dimension, models_dir=MODELS_DIR)
    with engine.connect() as conn:
        registry = registry_of(conn)
        assert (registry.signature, registry.state) == (embedder.signature(), ModelState.READY)
        assert column_typmod(conn) == dimension
        contents = dict(conn.execute(sa.text("SELECT id, content FROM knowledge_nodes")).all())
        vectors = stored_vectors(conn)
    assert len(vectors) == len(TEXTS)
    ids = list(contents)
    expected = embedder.embed_batch([contents[i] for i in ids])
    np.testing.assert_allclose(np.vstack([vectors[i] for i in ids]), expected, atol=2e-5)


@pytest.mark.slow
def test_upgrade_downgrade_upgrade_moves_every_row_between_models(base_schema: sa.Engine, db_url: str) -> None:
    with base_schema.begin() as conn:
        seed_store(conn, HashEmbedder(256), TEXTS)

    up = run_tool("alembic", "upgrade", "head", url=db_url)
    assert up.returncode == 0, up.stderr
    assert "reembed: wrote batch 1 (30 rows)" in up.stderr
    assert_store_on(base_schema, MINILM, 384)

    down = run_tool("alembic", "downgrade", "0001", url=db_url)
    assert down.returncode == 0, down.stderr
    assert_store_on(base_schema, "vestige/hash-256", 256)

    again = run_tool("alembic", "upgrade", "head", url=db_url)
    assert again.returncode == 0, again.stderr
    assert_store_on(base_schema, MINILM, 384)


def constants(path: Path) -> dict[str, object]:
    """The module-level constants of a revision file, read without importing it."""
    tree = ast.parse(path.read_text())
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            if isinstance(target, ast.Name):
                found[target.id] = ast.literal_eval(node.value)
    return found


def test_shipped_model_revision_names_both_models() -> None:
    found = constants(next((ROOT / "migrations" / "versions").glob("0002_*.py")))
    assert (found["embedding_model"], found["embedding_dimension"]) == (MINILM, 384)
    assert (found["previous_embedding_model"], found["previous_embedding_dimension"]) == ("vestige/hash-256", 256)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of alembic.ini and migrations/, so a generated revision stays out of the repo."""
    shutil.copy(ROOT / "alembic.ini", tmp_path / "alembic.ini")
    shutil.copytree(ROOT / "migrations", tmp_path / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.slow
def test_generated_revision_applies_and_reverts(project: Path, db_url: str, engine: sa.Engine) -> None:
    made = run_tool("vestige", "migrate", "revision", "--model", "vestige/hash-64", url=None, cwd=project)
    assert made.returncode == 0, made.stderr
    found = constants(next((project / "migrations" / "versions").glob(f"{NEXT_REVISION}_*.py")))
    assert found["embedding_model"] == {
        "model": "vestige/hash-64",
        "dimension": 64,
        "model_hash": HashEmbedder(64).signature().hash,
    }
    assert found["previous_embedding_model"] == {"model": MINILM, "dimension": 384, "model_hash": None}
    assert found["embedding_target"] == {
        "table": "knowledge_nodes",
        "key": "id",
        "content": "content",
        "embedding": "embedding",
    }
    assert found["down_revision"] == HEAD

    assert run_tool("alembic", "upgrade", "0001", url=db_url, cwd=project).returncode == 0
    with engine.begin() as conn:
        seed_store(conn, HashEmbedder(256), TEXTS)
    up = run_tool("alembic", "upgrade", "head", url=db_url, cwd=project)
    assert up.returncode == 0, up.stderr
    assert_store_on(engine, "vestige/hash-64", 64)
    down = run_tool("alembic", "downgrade", "-1", url=db_url, cwd=project)
    assert down.returncode == 0, down.stderr
    assert_store_on(engine, MINILM, 384)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no/such-model"], "unknown embedder model 'no/such-model'"),
        (["--model", "vestige/hash-64", "--dimension", "65"], "produces dimension 64, --dimension was 65"),
    ],
)
def test_revision_with_bad_model_writes_no_file(project: Path, args: list[str], message: str) -> None:
    before = sorted((project / "migrations" / "versions").iterdir())
    result = run_tool("vestige", "migrate", "revision", *args, url=None, cwd=project)
    assert result.returncode == 2
    assert message in result.stderr
    assert sorted((project / "migrations" / "versions").iterdir()) == before


@pytest.mark.parametrize("message", [r"path C:\Users\new", 'three """ quotes', "two\nlines"])
@pytest.mark.slow
def test_a_revision_message_never_breaks_the_file(project: Path, message: str) -> None:
    made = run_tool(
        "vestige", "migrate", "revision", "--model", "vestige/hash-64", "-m", message, url=None, cwd=project
    )
    assert made.returncode == 0, made.stderr
    history = run_tool("alembic", "history", url=None, cwd=project)
    assert history.returncode == 0, history.stderr
    assert " ".join(message.split()) in history.stdout


def test_the_machines_environment_configures_the_revisions_model_over_the_revision() -> None:
    from vestige_embed.alembic.ops import ReembedOp, embedder_for
    from vestige_embed.settings.config import load_settings

    operation = ReembedOp(MINILM, 384, threads=2, device="cpu")
    from_revision = embedder_for(operation, load_settings(environ={}))
    from_machine = embedder_for(
        operation, load_settings(environ={"VESTIGE_EMBED_THREADS": "1", "VESTIGE_EMBED_DEVICE": "auto"})
    )
    assert (from_revision._threads, from_revision._device) == (2, "cpu")  # type: ignore[attr-defined]
    assert (from_machine._threads, from_machine._device) == (1, "auto")  # type: ignore[attr-defined]


def test_a_written_revision_passes_ruff_as_it_stands_and_has_a_clean_name(project: Path) -> None:
    from tests.cli_helpers import BIN

    made = run_tool("vestige", "migrate", "revision", "--model", "vestige/hash-64", url=None, cwd=project)
    assert made.returncode == 0, made.stderr
    (written,) = (project / "migrations" / "versions").glob(f"{NEXT_REVISION}_*.py")
    assert written.name == f"{NEXT_REVISION}_re_embed_knowledge_nodes_with_hash_64.py"
    # A team's project: ruff's defaults plus import sorting and modern syntax, nothing of ours.
    checked = run_tool(str(BIN / "ruff"), "check", "--isolated", "--select", "E,F,W,I,UP,B", str(written), url=None)
    assert checked.returncode == 0, checked.stdout
    formatted = run_tool(str(BIN / "ruff"), "format", "--isolated", "--check", str(written), url=None)
    assert formatted.returncode == 0, formatted.stdout


def test_the_offline_script_keeps_a_percent_sign_as_written(project: Path) -> None:
    revision = project / "migrations" / "versions" / f"{NEXT_REVISION}_sale.py"
    revision.write_text(
        f'"""sale"""\n\nfrom alembic import op\n\nrevision = "{NEXT_REVISION}"\ndown_revision = "{HEAD}"\n'
        "branch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        "    op.execute(\"UPDATE knowledge_nodes SET content = content || ' (50% off)' WHERE false\")\n\n\n"
        "def downgrade() -> None:\n    pass\n"
    )
    result = run_tool("alembic", "upgrade", f"{HEAD}:{NEXT_REVISION}", "--sql", url=None, cwd=project)
    assert result.returncode == 0, result.stderr
    assert "' (50% off)'" in result.stdout and "%%" not in result.stdout


def pin(revision: Path, model_hash: str) -> None:
    """Edit the revision's pinned hash, as if it had been written on files this machine lacks."""
    text = revision.read_text()
    written = constants(revision)["embedding_model"]
    assert isinstance(written, dict)
    revision.write_text(text.replace(f'"model_hash": "{written["model_hash"]}"', f'"model_hash": "{model_hash}"'))


@pytest.mark.slow
def test_an_upgrade_on_other_model_files_than_the_revision_pins_refuses(
    project: Path, db_url: str, engine: sa.Engine
) -> None:
    assert (
        run_tool("vestige", "migrate", "revision", "--model", "vestige/hash-64", url=None, cwd=project).returncode == 0
    )
    (written,) = (project / "migrations" / "versions").glob(f"{NEXT_REVISION}_*.py")
    pin(written, "0" * 64)
    assert run_tool("alembic", "upgrade", "0001", url=db_url, cwd=project).returncode == 0
    with engine.begin() as conn:
        seed_store(conn, HashEmbedder(256), TEXTS)
    refused = run_tool("alembic", "upgrade", "head", url=db_url, cwd=project)
    assert refused.returncode != 0
    assert "FAILED: the revision pins vestige/hash-64 to files with sha256 000000000000" in refused.stdout
    assert "Traceback" not in refused.stderr
    assert_store_on(engine, MINILM, 384)  # where the revisions before it left it
    accepted = run_tool("alembic", "-x", "accept_model_hash=yes", "upgrade", "head", url=db_url, cwd=project)
    assert accepted.returncode == 0, accepted.stderr
    assert_store_on(engine, "vestige/hash-64", 64)


def test_a_model_that_cannot_be_loaded_here_is_written_unpinned_with_a_warning(project: Path) -> None:
    made = run_tool(
        "vestige", "migrate", "revision", "--model", "BAAI/bge-small-en-v1.5", url=None, cwd=project,
        HF_HUB_OFFLINE="1", FASTEMBED_CACHE_PATH=str(project / "empty-cache"),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "could not be loaded here, so the revision does not pin its files" in made.stderr
    (written,) = (project / "migrations" / "versions").glob(f"{NEXT_REVISION}_*.py")
    assert constants(written)["embedding_model"] == {
        "model": "BAAI/bge-small-en-v1.5",
        "dimension": 384,
        "model_hash": None,
    }


def test_a_revision_for_a_table_no_revision_declares_names_adoption(project: Path) -> None:
    result = run_tool(
        "vestige", "migrate", "revision", "--table", "articles", "--model", "vestige/hash-64", url=None, cwd=project
    )
    assert result.returncode == 2
    assert "no revision of alembic.ini declares a model for articles: adopt its vectors first" in result.stderr


@pytest.mark.slow
def test_an_adopt_revision_passes_ruff_as_it_stands_and_names_the_target(project: Path) -> None:
    from tests.cli_helpers import BIN

    made = run_tool(
        "vestige", "migrate", "adopt", "--table", "articles", "--key", "article_id",
        "--content", "title || ' ' || body", "--embedding", "emb", "--distance", "l2",
        "--model", "vestige/hash-64", "--dimension", "64", url=None, cwd=project,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (written,) = (project / "migrations" / "versions").glob(f"{NEXT_REVISION}_*.py")
    assert written.name == f"{NEXT_REVISION}_adopt_articles_on_hash_64.py"
    found = constants(written)
    assert found["embedding_target"] == {
        "table": "articles", "key": "article_id", "content": "title || ' ' || body",
        "embedding": "emb", "distance": "l2",
    }  # fmt: skip
    assert "op.adopt_embeddings(**embedding_model, **embedding_target)" in written.read_text()
    assert "op.release_embeddings(**embedding_target)" in written.read_text()
    checked = run_tool(str(BIN / "ruff"), "check", "--isolated", "--select", "E,F,W,I,UP,B", str(written), url=None)
    assert checked.returncode == 0, checked.stdout
    formatted = run_tool(str(BIN / "ruff"), "format", "--isolated", "--check", str(written), url=None)
    assert formatted.returncode == 0, formatted.stdout
    again = run_tool(
        "vestige", "migrate", "revision", "--table", "articles", "--model", "vestige/hash-32", url=None, cwd=project
    )
    assert again.returncode == 0, again.stderr
    (second,) = (project / "migrations" / "versions").glob(f"{int(NEXT_REVISION) + 1:04d}_*.py")
    assert constants(second)["previous_embedding_model"] == found["embedding_model"]
    assert constants(second)["embedding_target"] == found["embedding_target"]


@pytest.mark.slow
def test_an_adoption_as_a_script_says_the_claim_is_not_checked_and_registers(project: Path) -> None:
    made = run_tool(
        "vestige", "migrate", "adopt", "--table", "articles", "--content", "body",
        "--model", "vestige/hash-64", "--dimension", "64", url=None, cwd=project,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    script = run_tool("alembic", "upgrade", f"{HEAD}:{NEXT_REVISION}", "--sql", url=None, cwd=project)
    assert script.returncode == 0, script.stderr
    assert "the claim that the stored vectors are this model's is NOT checked" in script.stdout
    assert "INSERT INTO embedding_model" in script.stdout and "'public.articles', 'embedding'" in script.stdout
    assert "CREATE INDEX IF NOT EXISTS idx_articles_embedding_hnsw ON articles USING hnsw" in script.stdout
