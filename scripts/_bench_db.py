"""Shared by the benchmark scripts: a private embedded server and a seeded store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from psycopg import sql

from vestige_embed.embedders.base import Embedder
from vestige_embed.settings.embedded import ensure_database, server_url
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import DEFAULT_TARGET, KeyType, Statements

ROOT = Path(__file__).resolve().parent.parent
SEED_BATCH = 2_000
#: The default target with its key type known.
STORE = Statements(DEFAULT_TARGET.with_key_type(KeyType.UUID))


def admin(server: Any) -> psycopg.Connection[Any]:
    info = server.get_postmaster_info()
    return psycopg.connect(
        host=str(info.socket_dir), port=info.port, user="postgres", dbname="postgres", autocommit=True
    )


def memories(n: int) -> list[str]:
    """Short distinct texts: the machinery's benchmarks (the hashing embedder)."""
    return [f"memory number {i} talks about rust and async, postgres and vector search" for i in range(n)]


def docstring_texts(rows: int) -> list[str]:
    """`rows` real texts: the stdlib docstrings, cycled with a row number so every one is distinct."""
    from vestige_embed.demo.corpus import stdlib_docs

    docs = [d.content for d in stdlib_docs()]
    return [f"{docs[i % len(docs)]} (memory {i})" for i in range(rows)]


def drop_database(server: Any, name: str) -> None:
    with admin(server) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def fresh_database(server: Any, name: str) -> sa.Engine:
    """A new database at revision 0001 (empty store, HNSW index present)."""
    drop_database(server, name)
    ensure_database(server, name)
    url = server_url(server, name).render_as_string(hide_password=False)
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "0001")
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def copy_database(server: Any, template: str, name: str) -> sa.Engine:
    """A fresh copy of `template` (CREATE DATABASE ... TEMPLATE): each sample starts from the
    same state. A CHECKPOINT then writes out what the copy and the last sample left dirty,
    so no sample pays for another's pages."""
    drop_database(server, name)
    with admin(server) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
        conn.execute("CHECKPOINT")
    return sa.create_engine(server_url(server, name).render_as_string(hide_password=False), poolclass=sa.pool.NullPool)


def seeded_database(server: Any, name: str, embedder: Embedder, texts: list[str]) -> None:
    """A database at 0001 holding `texts` with `embedder`'s vectors, to copy from."""
    engine = fresh_database(server, name)
    seed(engine, embedder, texts)
    engine.dispose()


def seed(engine: sa.Engine, embedder: Embedder, contents: list[str]) -> list[uuid.UUID]:
    """Put the store on `embedder` and insert `contents` with its vectors."""
    ids = [uuid.uuid4() for _ in contents]
    with engine.begin() as conn:
        conn.execute(STORE.tighten(embedder.dimension))
        conn.execute(STORE.register_model(embedder.signature()))
        writer = VectorWriter(conn, STORE, DEFAULT_TARGET.embedding)
        for start in range(0, len(contents), SEED_BATCH):
            chunk_ids, chunk = ids[start : start + SEED_BATCH], contents[start : start + SEED_BATCH]
            conn.execute(STORE.table.insert(), [{"id": i, "content": c} for i, c in zip(chunk_ids, chunk, strict=True)])
            writer(list(chunk_ids), embedder.embed_batch(chunk))
    return ids
