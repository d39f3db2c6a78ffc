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

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision: str = ${lit(up_revision)}
down_revision: str | Sequence[str] | None = ${lit(down_revision)}
branch_labels: str | Sequence[str] | None = ${lit(branch_labels)}
depends_on: str | Sequence[str] | None = ${lit(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
