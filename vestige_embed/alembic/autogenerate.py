"""What autogenerate and `alembic check` leave to vestige-embed.

A team passes `include_object` to `context.configure(...)` in its env.py. Without it,
`alembic check` fails on every store vestige-embed manages (the registry and staging
tables are in no team's models, the HNSW index is rebuilt by each change, the embedding
column's size follows the model), and `alembic revision --autogenerate` writes a revision
that drops the search index.
"""

from __future__ import annotations

from typing import Any

from pgvector.sqlalchemy import HALFVEC, VECTOR

from vestige_embed.target import DEFAULT_TARGET, Statements
from vestige_embed.target.statements import INDEX_METHOD, LEGACY_STAGING_COLUMN, REGISTRY, STAGED_MODEL_KEY

#: The columns of every staging table (one definition: the statement builder's).
_STAGING_COLUMNS = frozenset(Statements(DEFAULT_TARGET).staging.c.keys())
#: vestige-embed 0.2's staging tables (the model's name, size and hash on every row), dropped
#: by the next `vestige migrate stage`.
_LEGACY_STAGING_COLUMNS = (_STAGING_COLUMNS - {STAGED_MODEL_KEY}) | {"model_name", "dimension", LEGACY_STAGING_COLUMN}
_VECTOR_TYPES = (VECTOR, HALFVEC)


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's `include_object` hook: False for what vestige-embed manages."""
    if type_ == "table":
        staging = reflected and set(obj.c.keys()) in (_STAGING_COLUMNS, _LEGACY_STAGING_COLUMNS)
        return not (name == REGISTRY or staging)
    if type_ == "index":
        return not (_is_hnsw(obj) or (compare_to is not None and _is_hnsw(compare_to)))
    if type_ == "column":
        # Both sides a vector column: its size is the registry's model's, not the models' file's.
        both = compare_to is not None and _is_vector(obj) and _is_vector(compare_to)
        # A vector column in the database alone: a change's new column, mid-run.
        transient = reflected and compare_to is None and _is_vector(obj) and str(name).endswith("_next")
        return not (both or transient)
    return True


def _is_hnsw(index: Any) -> bool:
    return str(index.dialect_kwargs.get("postgresql_using", "")).lower() == INDEX_METHOD


def _is_vector(column: Any) -> bool:
    return isinstance(column.type, _VECTOR_TYPES)
