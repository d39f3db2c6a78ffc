"""re-embed with all-MiniLM-L6-v2

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 14:03:16.944540
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

import vestige_embed.alembic  # noqa: F401  (registers op.reembed)

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The embedding model the store holds once this revision is applied.
embedding_model = "sentence-transformers/all-MiniLM-L6-v2"
embedding_dimension = 384
# The model it held before (the downgrade re-embeds back to it).
previous_embedding_model = "vestige/hash-256"
previous_embedding_dimension = 256


def upgrade() -> None:
    op.reembed(model=embedding_model, dimension=embedding_dimension)


def downgrade() -> None:
    op.reembed(model=previous_embedding_model, dimension=previous_embedding_dimension)
