"""The application's side: write articles with their embeddings, as the team's code does.

    python load_articles.py --model vestige/hash-384 --rows 500

Titles and bodies are docstrings of Python's standard library; vectors come from
`--model` (any model vestige-embed resolves: a fastembed name, or vestige/hash-N).
"""

from __future__ import annotations

import argparse
import os

import sqlalchemy as sa
from alembic.config import Config
from models import articles
from pgvector.sqlalchemy import VECTOR

from vestige_embed import resolve_embedder
from vestige_embed.demo.corpus import stdlib_docs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the model the application embeds with")
    parser.add_argument("--rows", type=int, default=500, help="how many articles to write (default 500)")
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    url = os.environ.get("DATABASE_URL") or Config(os.path.join(here, "alembic.ini")).get_main_option("sqlalchemy.url")
    docs = stdlib_docs()[: args.rows]
    embedder = resolve_embedder(args.model)
    vectors = embedder.embed_batch([f"{d.qualname}: {d.text}" for d in docs])
    rows = [
        {"title": d.qualname, "body": f"{d.qualname}: {d.text}", "embedding": v.tolist()}
        for d, v in zip(docs, vectors, strict=True)
    ]
    engine = sa.create_engine(url)
    insert = sa.insert(articles).values(embedding=sa.bindparam("embedding", type_=VECTOR()))
    with engine.begin() as conn:
        conn.execute(insert, rows)
    print(f"wrote {len(rows)} articles embedded with {embedder.name}")


if __name__ == "__main__":
    main()
