"""A team's own Alembic project on the installed wheel: examples/articles, run from another
folder, as the README's "Add to your Alembic project" has a new user type it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from tests.conftest import MODELS_DIR, ROOT
from vestige_embed import resolve_embedder
from vestige_embed.store import catalog
from vestige_embed.store.registry import find_registry
from vestige_embed.target import ModelState, Statements, Target

pytestmark = pytest.mark.slow

OLD, NEW = "vestige/hash-384", "sentence-transformers/all-MiniLM-L6-v2"
ARTICLES = Target(table="articles", key="id", content="body", embedding="embedding")
ROWS = 200


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the wheel built from this checkout (not editable)."""
    folder = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(folder / "dist"), str(ROOT)], check=True)
    (wheel,) = (folder / "dist").glob("vestige_embed-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
    venv_pip = [str(folder / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*venv_pip, "install", f"{wheel}[binary,cpu]"], check=True)
    return folder / "venv" / "bin"


class Shell:
    """Commands typed in a folder outside the project, the venv's bin first on PATH."""

    def __init__(self, bin_dir: Path, cwd: Path, db_url: str) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("VESTIGE_", "VIRTUAL_ENV"))}
        self.env |= {
            "PATH": f"{bin_dir}{os.pathsep}{self.env['PATH']}",
            "DATABASE_URL": db_url,
            "VESTIGE_MODELS_DIR": str(MODELS_DIR),
            "HF_HUB_OFFLINE": "1",
        }

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr


def stored(engine: sa.Engine) -> dict[int, tuple[str, np.ndarray, str]]:
    """id -> (body, vector, xmin)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, body, embedding::real[], xmin::text FROM articles")).all()
    return {r[0]: (r[1], np.asarray(r[2], np.float32), r[3]) for r in rows}


def assert_in_space(engine: sa.Engine, model: str) -> None:
    """Every row holds `model`'s vector of its body; the registry says `model`, ready; the index is valid."""
    embedder = resolve_embedder(model, models_dir=MODELS_DIR)
    rows = stored(engine)
    assert len(rows) == ROWS
    keys = sorted(rows)
    expected = embedder.embed_batch([rows[k][0] for k in keys])
    np.testing.assert_allclose(np.vstack([rows[k][1] for k in keys]), expected, atol=2e-5)
    with engine.connect() as conn:
        registry = find_registry(conn, ARTICLES)
        assert registry is not None
        assert (registry.signature, registry.state) == (embedder.signature(), ModelState.READY)
        assert catalog.index_validity(conn, Statements(ARTICLES)) is True


def test_the_example_project_adopts_and_changes_models_on_the_installed_wheel(
    installed: Path, tmp_path: Path, db_url: str, engine: sa.Engine
) -> None:
    project = tmp_path / "articles"
    shutil.copytree(ROOT / "examples" / "articles", project, ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sh = Shell(installed, elsewhere, db_url)
    ini = str(project / "alembic.ini")
    where = sh.ok("python", "-c", "import vestige_embed; print(vestige_embed.__file__)")
    assert where.startswith(str(installed.parent)), where  # the wheel, not this checkout

    sh.ok("alembic", "-c", ini, "upgrade", "head")
    sh.ok("python", str(project / "load_articles.py"), "--model", OLD, "--rows", str(ROWS))
    before = stored(engine)
    adopt = ["vestige", "migrate", "adopt", "--config", ini, "--table", "articles", "--content", "body"]

    # A wrong claim: written, refused at upgrade, nothing registered.
    sh.ok(*adopt, "--model", NEW, "--dimension", "384")
    refused = sh("alembic", "-c", ini, "upgrade", "head")
    assert refused.returncode != 0
    assert "FAILED: articles.embedding does not hold sentence-transformers/all-MiniLM-L6-v2's vectors" in refused.stdout
    with engine.connect() as conn:
        assert catalog.registry_shape(conn) is catalog.RegistryShape.ABSENT
    for wrong in (project / "migrations" / "versions").glob("0002_*.py"):
        wrong.unlink()

    # The right claim: adopted, not one row rewritten.
    sh.ok(*adopt, "--model", OLD, "--dimension", "384")
    sh.ok("alembic", "-c", ini, "upgrade", "head")
    assert {k: v[2] for k, v in stored(engine).items()} == {k: v[2] for k, v in before.items()}  # xmin: untouched
    assert_in_space(engine, OLD)

    # A model change in the team's history.
    sh.ok("vestige", "migrate", "revision", "--config", ini, "--table", "articles", "--model", NEW)
    sh.ok("alembic", "-c", ini, "upgrade", "head")
    assert_in_space(engine, NEW)
    assert "No new upgrade operations detected" in sh.ok("alembic", "-c", ini, "check")
    status = sh.ok("vestige", "migrate", "status", "--config", ini, "--postgres-url", db_url, "--table", "articles")
    assert "problems: none" in status

    # And back, exactly.
    sh.ok("alembic", "-c", ini, "downgrade", "-1")
    assert_in_space(engine, OLD)
    after = stored(engine)
    for key, (body, vector, _) in before.items():
        assert after[key][0] == body
        np.testing.assert_allclose(after[key][1], vector, atol=1e-6)
