<%!
import json


def lit(value):
    """A Python literal as `ruff format` writes it (double quotes)."""
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(json.dumps(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return json.dumps(value)
%>"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from collections.abc import Sequence

% if not context.get("embedding_model"):
import sqlalchemy as sa
% endif
from alembic import op
${imports if imports else ""}
revision: str = ${lit(up_revision)}
down_revision: str | Sequence[str] | None = ${lit(down_revision)}
branch_labels: str | Sequence[str] | None = ${lit(branch_labels)}
depends_on: str | Sequence[str] | None = ${lit(depends_on)}
% if context.get("embedding_model"):

# The embedding model the store holds once this revision is applied (op.reembed is
# registered by env.py's `import vestige_embed.alembic`).
embedding_model = ${lit(context.get("embedding_model"))}
embedding_dimension = ${context.get("embedding_dimension")}
# The model it held before (the downgrade re-embeds back to it).
previous_embedding_model = ${lit(context.get("previous_embedding_model"))}
previous_embedding_dimension = ${context.get("previous_embedding_dimension")}


def upgrade() -> None:
    op.reembed(model=embedding_model, dimension=embedding_dimension)


def downgrade() -> None:
    op.reembed(model=previous_embedding_model, dimension=previous_embedding_dimension)
% else:


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
% endif
