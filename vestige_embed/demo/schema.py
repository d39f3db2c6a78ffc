"""The demo store's table as an application's models would declare it: env.py gives it
to autogenerate, so `alembic check` compares the database with it (the base revision,
0001, created it)."""

from __future__ import annotations

import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR

from vestige_embed.target import DEFAULT_TARGET

metadata = sa.MetaData()

knowledge_nodes = sa.Table(
    DEFAULT_TARGET.table_name,
    metadata,
    sa.Column(DEFAULT_TARGET.key, sa.Uuid, primary_key=True, server_default=sa.func.gen_random_uuid()),
    sa.Column(DEFAULT_TARGET.content, sa.Text, nullable=False),
    # No size: the registry's model sets it, and each model change changes it.
    sa.Column(DEFAULT_TARGET.embedding, VECTOR(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
