"""Alembic environment: one URL resolution (vestige_embed.settings), one transaction per revision."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from vestige_embed.alembic import include_object  # the import registers op.reembed too
from vestige_embed.demo.schema import metadata
from vestige_embed.settings.config import Settings, load_settings, project_folder, resolve_database_url
from vestige_embed.settings.urls import DRIVER, connect_args

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _settings() -> Settings:
    """Settings of this project: the folders beside alembic.ini, wherever alembic runs from."""
    return load_settings(
        ini_url=config.get_main_option("sqlalchemy.url"), project=project_folder(config.config_file_name)
    )


def run_migrations_offline() -> None:
    """`--sql`: no server is contacted (nor started); only the dialect matters."""
    context.configure(
        url=_settings().database_url or f"{DRIVER}://",
        literal_binds=True,
        # Alembic's stock setting: without it every `%` in the script is doubled.
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        transaction_per_migration=True,
        # `alembic check` and autogenerate compare the store with its table's declaration,
        # leaving alone what vestige-embed manages (registry, staging, HNSW, vector sizes).
        target_metadata=metadata,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    url = resolve_database_url(_settings())
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args())
    with engine.connect() as connection:
        _run(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
