"""registry: one row per target

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

vestige-embed 0.1 kept one registry row (`id = 1`) for knowledge_nodes.embedding. From
0.2 the registry has a row per (table, embedding column), so one database can hold
several embedded columns, each on its own model. The old row becomes the row of
public.knowledge_nodes.embedding; nothing else changes. Every statement is idempotent
(a run of 0.2's engine converts the registry too, and a new database already has it).

Vectors staged by 0.1 (table knowledge_nodes_reembed_staging) are dropped: 0.2 stages
into knowledge_nodes_embedding_staging. Run `vestige migrate stage` again if you had staged.

Downgrade keeps the per-target registry: vestige-embed 0.2 needs it at every revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import DropTable

import vestige_embed.alembic  # noqa: F401  (registers op.reembed)
from vestige_embed.target.statements import create_registry

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEGACY_STAGING = "knowledge_nodes_reembed_staging"


def upgrade() -> None:
    for statement in create_registry():
        op.execute(statement)
    op.execute(DropTable(sa.Table(LEGACY_STAGING, sa.MetaData()), if_exists=True))


def downgrade() -> None:
    pass
