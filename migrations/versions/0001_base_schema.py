"""base schema: knowledge_nodes, the model registry, the HNSW index

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Initial model: the deterministic hashing embedder vestige/hash-256.
Downgrade drops the tables and the index but keeps the `vector` extension, which other
schemas of the database may use. It refuses while the table holds rows, unless the
operator says `alembic downgrade base -x drop_rows=yes`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR

from vestige_embed.alembic.ops import refuse_dropping_rows
from vestige_embed.embedders import resolve_embedder
from vestige_embed.target import DEFAULT_TARGET, Statements
from vestige_embed.target.statements import create_pgvector, create_registry, drop_registry

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The embedding model the store holds once this revision is applied.
embedding_model = "vestige/hash-256"
embedding_dimension = 256

_target = DEFAULT_TARGET
_statements = Statements(_target)


def upgrade() -> None:
    op.execute(create_pgvector())
    op.create_table(
        _target.table_name,
        sa.Column(_target.key, sa.Uuid, primary_key=True, server_default=sa.func.gen_random_uuid()),
        sa.Column(_target.content, sa.Text, nullable=False),
        sa.Column(_target.embedding, VECTOR(embedding_dimension), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    for statement in create_registry():
        op.execute(statement)
    op.execute(_statements.create_index())
    op.execute(_statements.insert_registry(resolve_embedder(embedding_model, embedding_dimension).signature()))


def downgrade() -> None:
    refuse_dropping_rows(_target)  # stored memories go only when the operator says so
    op.execute(_statements.drop_index())
    op.execute(drop_registry())
    op.drop_table(_target.table_name)
