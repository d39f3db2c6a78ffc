"""vestige-embed next to what teams otherwise write, on the same rows: wall time and peak RSS.

The same model change (a 384-d store moved to a new 384-d model) done four ways, each in a
fresh process on a fresh copy of one database, in alternating rounds (median, spread):
- vestige-embed: `run_reembed` as `alembic upgrade` runs it (atomic, index rebuilt);
- a naive SQLAlchemy ORM script: load every row, set `embedding` per row, commit, with the
  HNSW index left in place;
- the same script dropping the index first and creating it again after;
- LangChain's `PGVector`: the store re-created as a new collection with `add_texts`, in
  chunks of 1,000 (all 20,000 at once exceed PostgreSQL's 65,535 bind parameters).
Each embeds in batches of 128 with the same embedder; the hashing embedder (20,000 rows)
shows the machinery, all-MiniLM-L6-v2 (500 rows) a real model.

Run: `make bench-peers` (its own virtual environment with langchain-postgres), or
`.venv-peers/bin/python scripts/bench_peers.py [--rows N] [--minilm-rows N] [--repeats N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _bench_common import peak_rss_mb
from _bench_db import STORE, copy_database, docstring_texts, drop_database, seeded_database
from _bench_stats import DEFAULT_REPEATS, Figure, alternate

from vestige_embed import Embedder, HashEmbedder, ReembedPlan, resolve_embedder, run_reembed
from vestige_embed.embedders.base import Matrix
from vestige_embed.settings.config import load_settings
from vestige_embed.target import ModelSignature

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
BATCH = 128
LANGCHAIN_CHUNK = 1_000
CONTENDERS = ("vestige-embed", "ORM per row, index kept", "ORM per row, index rebuilt", "LangChain PGVector")


class OldModel:
    """The store's previous 384-d model: fixed random unit vectors (seeding only)."""

    name, dimension = "bench/old-384", 384

    def signature(self) -> ModelSignature:
        return ModelSignature(self.name, self.dimension, "0" * 64)

    def embed_batch(self, texts: Sequence[str]) -> Matrix:
        vectors = np.random.default_rng(len(texts)).standard_normal((len(texts), self.dimension))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def new_model(name: str) -> Embedder:
    return HashEmbedder(384) if name == "hash" else resolve_embedder(MINILM, 384, models_dir=load_settings().models_dir)


def vestige(url: str, embedder: Embedder) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        run_reembed(conn, embedder, ReembedPlan(batch_size=BATCH))
        conn.commit()


def orm(url: str, embedder: Embedder, *, rebuild: bool) -> None:
    """What a team writes in an afternoon."""

    class Base(DeclarativeBase):
        pass

    class Node(Base):
        __tablename__ = STORE.table.name
        id: Mapped[Any] = mapped_column(sa.Uuid, primary_key=True)
        content: Mapped[str] = mapped_column(sa.Text)
        embedding: Mapped[Any] = mapped_column(Vector(384))

    engine = sa.create_engine(url)
    with Session(engine) as session:
        if rebuild:
            session.execute(STORE.drop_index())
        nodes = session.scalars(sa.select(Node)).all()
        for start in range(0, len(nodes), BATCH):
            chunk = nodes[start : start + BATCH]
            for node, vector in zip(chunk, embedder.embed_batch([n.content for n in chunk]), strict=True):
                node.embedding = vector
        session.commit()
        if rebuild:
            session.execute(STORE.create_index())
            session.commit()


def langchain(url: str, embedder: Embedder) -> None:
    from langchain_core.embeddings import Embeddings
    from langchain_postgres import PGVector

    class Adapter(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            out: list[list[float]] = []
            for start in range(0, len(texts), BATCH):
                out.extend(embedder.embed_batch(texts[start : start + BATCH]).tolist())
            return out

        def embed_query(self, text: str) -> list[float]:
            return list(embedder.embed_batch([text])[0].tolist())

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(STORE.key, STORE.table.c.content)).all()
    store = PGVector(embeddings=Adapter(), collection_name="memories_next", connection=url, use_jsonb=True)
    for start in range(0, len(rows), LANGCHAIN_CHUNK):
        chunk = rows[start : start + LANGCHAIN_CHUNK]
        store.add_texts([r.content for r in chunk], ids=[str(r.id) for r in chunk])


def child(contender: str, model: str, url: str) -> None:
    embedder = new_model(model)
    embedder.embed_batch(["warm up"])  # every contender starts with a loaded model
    started = time.perf_counter()
    if contender == CONTENDERS[0]:
        vestige(url, embedder)
    elif contender == CONTENDERS[3]:
        langchain(url, embedder)
    else:
        orm(url, embedder, rebuild=contender == CONTENDERS[2])
    print(json.dumps({"secs": time.perf_counter() - started, "peak_mb": peak_rss_mb()}))


def sample(server: Any, contender: str, model: str, rss: dict[str, list[float]]) -> float:
    engine = copy_database(server, "peers_store", "peer_sample")
    url = engine.url.render_as_string(hide_password=False)
    engine.dispose()
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", contender, model, url], capture_output=True, text=True
        )
        if out.returncode != 0:
            raise RuntimeError(f"{contender}: {out.stderr[-1500:]}")
        found = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        drop_database(server, "peer_sample")
    rss.setdefault(contender, []).append(found["peak_mb"])
    return float(found["secs"])


def compare(server: Any, model: str, rows: int, repeats: int, contenders: list[str]) -> None:
    seeded_database(server, "peers_store", OldModel(), docstring_texts(rows))  # type: ignore[arg-type]
    rss: dict[str, list[float]] = {}
    print(f"\n{'vestige/hash-384' if model == 'hash' else MINILM}, {rows} rows (wall seconds, model loaded):")
    figures = alternate({c: partial(sample, server, c, model, rss) for c in contenders}, repeats, "s")
    ours = figures[CONTENDERS[0]].median
    for name, figure in figures.items():
        memory = Figure("rss", "MB", rss[name]).median
        print(f"{figure.line(2)}  {figure.median / ours:5.1f}x vestige-embed's time, peak RSS {memory:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows for the hashing embedder (default 20,000)")
    parser.add_argument("--minilm-rows", type=int, default=500, help="rows for MiniLM (default 500)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="rounds per figure (default 3)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from vestige_embed.settings.embedded import start_server

    contenders = list(CONTENDERS)
    try:
        import langchain_postgres  # noqa: F401
    except ImportError:
        contenders.remove(CONTENDERS[3])
        print("langchain-postgres is not installed here: `make bench-peers` installs it in .venv-peers")
    print(f"cpus: {os.cpu_count()}  repeats: {args.repeats}  (median [lowest .. highest])")
    with (
        tempfile.TemporaryDirectory(prefix="vestige-bench-peers-") as tmp,
        start_server(Path(tmp) / "pgdata") as server,
    ):
        compare(server, "hash", args.rows, args.repeats, contenders)
        compare(server, "minilm", args.minilm_rows, args.repeats, contenders)


if __name__ == "__main__":
    main()
