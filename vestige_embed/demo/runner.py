"""The demo: base schema, the stdlib corpus, searches, the model change, searches again."""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.dialects.postgresql import insert

from vestige_embed.demo.corpus import QUERIES, Doc, Query, stdlib_docs
from vestige_embed.embedders import Embedder, resolve_embedder
from vestige_embed.errors import ConfigError
from vestige_embed.run.pipeline import run_locked_pass
from vestige_embed.run.progress import NoProgress
from vestige_embed.settings.config import load_settings, project_folder, resolve_database_url
from vestige_embed.settings.urls import connect_args, redact
from vestige_embed.store import catalog
from vestige_embed.store.registry import read_registry
from vestige_embed.store.search import vector_search
from vestige_embed.target import DEFAULT_TARGET, KeyType, Statements

BASE_REVISION = "0001"
SHOWN_QUERIES = 4
TOP = 3
HIT_RATE_K = 5
_WIDTH = 100


_STORE = Statements(DEFAULT_TARGET.with_key_type(KeyType.UUID))


def load_corpus(conn: sa.Connection, docs: list[Doc]) -> int:
    """Insert the docs that are not there yet (stable ids); returns how many were new."""
    before = catalog.count(conn, _STORE.count_rows())
    target = DEFAULT_TARGET
    rows = [{target.key: d.id, target.content: d.content} for d in docs]
    conn.execute(insert(_STORE.table).on_conflict_do_nothing(index_elements=[target.key]), rows)
    return catalog.count(conn, _STORE.count_rows()) - before


def embed_missing(conn: sa.Connection, embedder: Embedder, batch_size: int = 256) -> int:
    """What an application does on insert: give rows without a vector one from the current model."""
    missing = _STORE.column(DEFAULT_TARGET.embedding).is_(None)
    return run_locked_pass(
        conn, _STORE, DEFAULT_TARGET.embedding, embedder, batch_size, missing, progress=NoProgress(), label="embed"
    )


def hit_rate(conn: sa.Connection, embedder: Embedder, queries: tuple[Query, ...] = QUERIES) -> int:
    """How many queries have a right answer in the top HIT_RATE_K."""
    probes = embedder.embed_batch([q.text for q in queries])
    found = 0
    for query, probe in zip(queries, probes, strict=True):
        names = {h.content.split(":", 1)[0] for h in vector_search(conn, probe, HIT_RATE_K, model=embedder.signature())}
        found += bool(names & set(query.answers))
    return found


def show_searches(conn: sa.Connection, models_dir: Path) -> None:
    model = read_registry(conn, DEFAULT_TARGET).signature
    embedder = resolve_embedder(model.name, model.dimension, models_dir=models_dir)
    probes = embedder.embed_batch([q.text for q in QUERIES[:SHOWN_QUERIES]])
    print(f"\nSearches with {model.describe()}:")
    for query, probe in zip(QUERIES[:SHOWN_QUERIES], probes, strict=True):
        print(f'  "{query.text}"')
        for rank, hit in enumerate(vector_search(conn, probe, TOP, model=embedder.signature()), 1):
            mark = "*" if hit.content.split(":", 1)[0] in query.answers else " "
            print(f"    {rank}.{mark} {hit.distance:.3f}  {hit.content[:_WIDTH]}")
    hits = hit_rate(conn, embedder)
    print(f"  right answer in the top {HIT_RATE_K} for {hits}/{len(QUERIES)} queries (* marks a right answer)")


def run_demo(config_path: Path) -> None:
    if not config_path.is_file():
        raise ConfigError(
            f"{config_path} not found: the demo applies vestige-embed's own migrations, so it runs in a checkout "
            "of vestige-embed (`make demo` there), or with --config naming its alembic.ini. In your own "
            'project, see the README\'s "Add to your Alembic project"'
        )
    config = Config(str(config_path))
    settings = load_settings(ini_url=config.get_main_option("sqlalchemy.url"), project=project_folder(config_path))
    if settings.database_url is not None:
        raise ConfigError(
            f"the demo downgrades and reloads its database, so it only runs on the embedded server, "
            f"but a database is configured ({redact(settings.database_url)}). "
            "Unset VESTIGE_DATABASE_URL (and sqlalchemy.url in alembic.ini) to run it."
        )
    url = resolve_database_url(settings)
    head = ScriptDirectory.from_config(config).get_current_head()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args())
    print(f"vestige-embed demo on {redact(url)}")
    print(f"(the embedded PostgreSQL + pgvector; data folder {settings.pgdata})")

    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current not in (None, BASE_REVISION):
        print(f"\nThe store is at revision {current} from an earlier run: `alembic downgrade {BASE_REVISION}` first.")
        command.downgrade(config, BASE_REVISION)
    elif current is None:
        print(f"\n$ alembic upgrade {BASE_REVISION}")
        command.upgrade(config, BASE_REVISION)

    docs = stdlib_docs()
    with engine.begin() as conn:
        added = load_corpus(conn, docs)
        model = read_registry(conn, DEFAULT_TARGET).signature
        embedded = embed_missing(conn, resolve_embedder(model.name, model.dimension, models_dir=settings.models_dir))
        total = catalog.count(conn, _STORE.count_rows())
    print(f"\nCorpus: {len(docs)} docstrings of this Python's standard library; {added} new rows, {total} in the store")
    print(f"Embedded {embedded} rows with {model.describe()}")
    with engine.connect() as conn:
        show_searches(conn, settings.models_dir)

    print(f"\n$ alembic upgrade head   (revision {head}: the model change)")
    started = time.perf_counter()
    command.upgrade(config, "head")
    print(f"upgrade took {time.perf_counter() - started:.1f} s")
    with engine.connect() as conn:
        show_searches(conn, settings.models_dir)
    engine.dispose()
    print("\nNext: `make status`, `make test`; the README explains deploying a model change.")
