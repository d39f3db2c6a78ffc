"""An application writing while a model change runs: a real second process.

Usage: python tests/writer_worker.py URL MODE STOP_FILE [PAUSE_SECS]

- `contract`: each transaction follows the application contract: `model_for_write`,
  then inserts a row and edits another, both with vectors of the model it returned, and
  stages them for the `pending_model` while a change is being staged;
- `unstaged`: the same, but stages nothing for a pending change;
- `plain`: edits a row's content and clears its vector (an application that embeds
  later), without the helper.

Runs until STOP_FILE exists, then prints one JSON line: the rows it inserted, the last
content it gave each row it edited, how many writes and the longest a write waited.
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from vestige_embed import (
    Embedder,
    HashEmbedder,
    ModelSignature,
    model_for_write,
    pending_model,
    resolve_embedder,
    stage_written,
)
from vestige_embed.embedders.base import Matrix
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import DEFAULT_TARGET, KeyType, Statements

STORE = Statements(DEFAULT_TARGET.with_key_type(KeyType.UUID))
REVERSED = "test/reversed-hash-"


class ReversedHash(HashEmbedder):
    """A second model of the same size as `vestige/hash-N`: same dimension, other vectors."""

    @property
    def name(self) -> str:
        return f"{REVERSED}{self.dimension}"

    def signature(self) -> ModelSignature:
        base = super().signature()
        return ModelSignature(self.name, base.dimension, "reversed-" + base.hash)

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        return super().embed_batch([t[::-1] for t in texts])


def embedder_for(model: ModelSignature) -> Embedder:
    if model.name.startswith(REVERSED):
        return ReversedHash(model.dimension)
    return resolve_embedder(model.name, model.dimension)


def main(url: str, mode: str, stop: Path, pause: float) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    rng = random.Random(7)
    with engine.connect() as conn:
        keys = list(conn.execute(sa.select(STORE.key)).scalars())
    inserted: list[str] = []
    edited: dict[str, str] = {}
    writes, longest, n = 0, 0.0, 0
    while not stop.exists():
        n += 1
        started = time.perf_counter()
        with engine.begin() as conn:
            target = rng.choice(keys)
            content = f"edited by the writer, edit {n}: {rng.random():.6f}"
            if mode in ("contract", "unstaged"):
                model = model_for_write(conn)
                embedder = embedder_for(model)
                new_key, new_content = uuid.uuid4(), f"inserted by the writer, row {n}"
                conn.execute(STORE.table.insert().values({"id": new_key, "content": new_content}))
                conn.execute(STORE.table.update().where(STORE.key == target).values(content=content))
                writer = VectorWriter(conn, STORE, DEFAULT_TARGET.embedding)
                writer([new_key, target], embedder.embed_batch([new_content, content]))
                pending = pending_model(conn) if mode == "contract" else None
                if pending is not None:
                    vectors = embedder_for(pending).embed_batch([new_content, content])
                    stage_written(conn, DEFAULT_TARGET, pending, [new_key, target], vectors)
                inserted.append(str(new_key))
            else:
                conn.execute(STORE.table.update().where(STORE.key == target).values(content=content, embedding=None))
        longest = max(longest, time.perf_counter() - started)
        edited[str(target)] = content
        writes += 1
        time.sleep(pause)
    print(json.dumps({"inserted": inserted, "edited": edited, "writes": writes, "longest_wait": longest}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.02)
