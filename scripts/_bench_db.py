"""Shared by the benchmark scripts: a private embedded server and a seeded store."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from vestige_embed.embedded import ensure_database, server_url
from vestige_embed.embedders.base import Embedder
from vestige_embed.registry import register_model
from vestige_embed.schema import knowledge_nodes
from vestige_embed.typmod import alter_type_sql
from vestige_embed.vector_io import register_binary_arrays, write_unnest

ROOT = Path(__file__).resolve().parent.parent
SEED_BATCH = 2_000


def fresh_database(server: Any, name: str) -> sa.Engine:
    """A new database at revision 0001 (empty store, HNSW index present)."""
    info = server.get_postmaster_info()
    with psycopg.connect(
        host=str(info.socket_dir), port=info.port, user="postgres", dbname="postgres", autocommit=True
    ) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    ensure_database(server, name)
    url = server_url(server, name).render_as_string(hide_password=False)
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "0001")
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def seed(engine: sa.Engine, embedder: Embedder, contents: list[str]) -> list[uuid.UUID]:
    """Put the store on `embedder` and insert `contents` with its vectors."""
    ids = [uuid.uuid4() for _ in contents]
    with engine.begin() as conn:
        conn.execute(sa.text(alter_type_sql(embedder.dimension)))
        conn.execute(register_model(embedder.signature()))
        register_binary_arrays(conn)
        for start in range(0, len(contents), SEED_BATCH):
            chunk_ids, chunk = ids[start : start + SEED_BATCH], contents[start : start + SEED_BATCH]
            conn.execute(
                knowledge_nodes.insert(), [{"id": i, "content": c} for i, c in zip(chunk_ids, chunk, strict=True)]
            )
            write_unnest(conn, "embedding", chunk_ids, embedder.embed_batch(chunk))
    return ids
