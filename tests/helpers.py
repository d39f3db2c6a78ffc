"""Shared test helpers: seeding the store and counting embedder calls."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from vestige_embed.embedders.base import Embedder, Matrix
from vestige_embed.registry import register_model
from vestige_embed.schema import knowledge_nodes
from vestige_embed.signature import ModelSignature
from vestige_embed.typmod import alter_type_sql
from vestige_embed.vector_io import register_binary_arrays, write_unnest


class CountingEmbedder:
    """Wraps an embedder and counts calls and texts (the no-op and resume tests read them)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0

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
        return self.inner.embed_batch(texts)


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
    conn.execute(sa.text(alter_type_sql(embedder.dimension)))
    conn.execute(register_model(embedder.signature()))
    ids = list(ids) if ids is not None else [uuid.uuid4() for _ in contents]
    if ids:
        conn.execute(knowledge_nodes.insert(), [{"id": i, "content": c} for i, c in zip(ids, contents, strict=True)])
    if embed and ids:
        register_binary_arrays(conn)
        write_unnest(conn, "embedding", ids, embedder.embed_batch(list(contents)))
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


WORKER = Path(__file__).with_name("reembed_worker.py")
KILL_AFTER = "wrote batch 3 "


def kill_mid_pass(url: str, mode: str) -> str:
    """Start the worker, SIGKILL it once it has written three batches; returns its log."""
    env = {**os.environ, "PYTHONPATH": str(WORKER.parent.parent)}
    proc = subprocess.Popen([sys.executable, str(WORKER), url, mode], stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    log = []
    for line in proc.stderr:
        log.append(line)
        if KILL_AFTER in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(log)
    return "".join(log)
