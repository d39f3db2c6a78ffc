"""base schema: knowledge_nodes, the model registry, the HNSW index

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Initial model: the deterministic hashing embedder vestige/hash-256.
Downgrade drops the tables and the index but keeps the `vector` extension, which other
schemas of the database may use.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vestige_embed.embedders import resolve_embedder
from vestige_embed.registry import insert_registry
from vestige_embed.schema import (
    EMBEDDING_MODEL,
    HNSW_INDEX,
    KNOWLEDGE_NODES,
    create_hnsw_index_sql,
    drop_hnsw_index_sql,
    embedding_model_columns,
    knowledge_nodes_columns,
)

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The embedding model the store holds once this revision is applied.
embedding_model = "vestige/hash-256"
embedding_dimension = 256


def upgrade() -> None:
    op.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    op.create_table(KNOWLEDGE_NODES, *knowledge_nodes_columns(embedding_dimension))
    op.create_table(EMBEDDING_MODEL, *embedding_model_columns())
    op.execute(sa.text(create_hnsw_index_sql().strip()))
    op.execute(insert_registry(resolve_embedder(embedding_model, embedding_dimension).signature()))


def downgrade() -> None:
    op.execute(sa.text(drop_hnsw_index_sql(name=HNSW_INDEX).strip()))
    op.drop_table(EMBEDDING_MODEL)
    op.drop_table(KNOWLEDGE_NODES)
