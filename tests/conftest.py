"""Test harness: the embedded PostgreSQL + pgvector, a fresh database per test, Alembic
applied through its own API, and the offline MiniLM folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from pytest_postgresql import factories

from vestige_embed.embedders.model_files import assemble_offline_model
from vestige_embed.settings.config import DATABASE_URL_ENV, MODELS_DIR_ENV
from vestige_embed.settings.embedded import start_server
from vestige_embed.settings.urls import DRIVER

ROOT = Path(__file__).resolve().parent.parent
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop(DATABASE_URL_ENV, None)
#: The models folder `make models` fills; the session fixture calls the same code.
MODELS_DIR = Path(os.environ.get(MODELS_DIR_ENV) or ROOT / ".vestige" / "models")
os.environ[MODELS_DIR_ENV] = str(MODELS_DIR)

#: The head of this repository's migrations (tests never hard-code it).
HEAD = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
#: The id `vestige migrate revision` gives the next revision.
NEXT_REVISION = f"{int(HEAD or 0) + 1:04d}"

_FOLDER = Path(tempfile.mkdtemp(prefix="vestige-test-pg-"))
_SERVER = start_server(_FOLDER / "pgdata")
_INFO = _SERVER.get_postmaster_info()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the test server and remove its data folder (~90 MB a run otherwise)."""
    _SERVER.cleanup()
    shutil.rmtree(_FOLDER, ignore_errors=True)


def _create_vector(**kwargs: Any) -> None:
    with psycopg.connect(
        host=kwargs["host"], port=kwargs["port"], user=kwargs["user"], dbname=kwargs["dbname"], autocommit=True
    ) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


postgresql_noproc = factories.postgresql_noproc(
    host=str(_INFO.socket_dir), port=int(_INFO.port), user="postgres", load=[_create_vector]
)
postgresql = factories.postgresql("postgresql_noproc")


@pytest.fixture
def db_url(postgresql: psycopg.Connection[Any]) -> str:
    """A fresh database with pgvector, as a SQLAlchemy URL."""
    info = postgresql.info
    url = sa.engine.URL.create(
        DRIVER, username=info.user, database=info.dbname, query={"host": info.host, "port": str(info.port)}
    )
    return url.render_as_string(hide_password=False)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    yield eng
    eng.dispose()


@pytest.fixture
def alembic_config(db_url: str) -> Config:
    """alembic.ini pointed at the test database through `sqlalchemy.url` (env.py resolves it)."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


@pytest.fixture
def base_schema(alembic_config: Config, engine: sa.Engine) -> sa.Engine:
    """A database at revision 0001: empty store, registry on vestige/hash-256."""
    command.upgrade(alembic_config, "0001")
    return engine


@pytest.fixture(scope="session")
def minilm_folder() -> Path:
    """The real all-MiniLM-L6-v2 folder, assembled the way `make models` does."""
    return assemble_offline_model(MODELS_DIR)
