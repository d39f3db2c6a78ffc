<%!
import json


def lit(value):
    """A Python literal as `ruff format` writes it (double quotes)."""
    if value is None:
        return "None"
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(json.dumps(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return json.dumps(value)


def block(mapping):
    """A dict one item a line with a trailing comma: `ruff format` keeps it at any line length."""
    return "{\n" + "".join(f"    {json.dumps(k)}: {lit(v)},\n" for k, v in mapping.items()) + "}"
%>"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = ${lit(up_revision)}
down_revision: str | Sequence[str] | None = ${lit(down_revision)}
branch_labels: str | Sequence[str] | None = ${lit(branch_labels)}
depends_on: str | Sequence[str] | None = ${lit(depends_on)}

# Written by `vestige migrate ${"adopt" if kind == "adopt" else "revision"}`; env.py's `import vestige_embed.alembic`
# registers the operation. model_hash pins the model's files (weights, tokenizer and
# config): upgrades on other files refuse (`alembic -x accept_model_hash=yes` accepts).
embedding_target = ${block(embedding_target)}
% if kind == "adopt":
# The model the column's vectors were made with (a sample is checked when it runs).
embedding_model = ${block(embedding_model)}


def upgrade() -> None:
    op.adopt_embeddings(**embedding_model, **embedding_target)


def downgrade() -> None:
    # The registration only: the table, its vectors and its index stay.
    op.release_embeddings(**embedding_target)
% else:
# The model the column holds once this revision is applied, and the one it held before.
embedding_model = ${block(embedding_model)}
previous_embedding_model = ${block(previous_embedding_model)}


def upgrade() -> None:
    op.reembed(**embedding_model, **embedding_target)


def downgrade() -> None:
    op.reembed(**previous_embedding_model, **embedding_target)
% endif
