"""The store's tables, the HNSW index and its parameters: the one definition of every SQL name.

Every statement vestige-embed emits (base revision, engine, staging, offline script)
builds its identifiers from here; SQLAlchemy quotes them.
"""

from __future__ import annotations

import enum
from typing import Any

import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, DropIndex

KNOWLEDGE_NODES = "knowledge_nodes"
EMBEDDING_MODEL = "embedding_model"
STAGING = "knowledge_nodes_reembed_staging"
EMBEDDING = "embedding"
#: Approach C (and the staged swap) fill this column, then rename it to EMBEDDING.
NEXT_EMBEDDING = "embedding_next"

HNSW_INDEX = "idx_knowledge_nodes_embedding_hnsw"
#: The index the staged swap builds on NEXT_EMBEDDING while HNSW_INDEX still serves.
NEXT_HNSW_INDEX = "idx_knowledge_nodes_embedding_next_hnsw"
HNSW_OPCLASS = "vector_cosine_ops"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
#: pgvector's HNSW index accepts `vector` columns of at most this many dimensions.
HNSW_MAX_DIMENSION = 2000

REGISTRY_ROW_ID = 1

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


class ModelState(enum.StrEnum):
    """Whether the application may serve search from the stored vectors."""

    READY = "ready"
    REEMBEDDING = "reembedding"


def knowledge_nodes_columns(dimension: int | None) -> list[sa.Column[Any]]:
    """Columns of `knowledge_nodes`; `dimension` sets the vector typmod (None: no typmod)."""
    return [
        sa.Column("id", sa.Uuid, primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column(EMBEDDING, VECTOR(dimension), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


def embedding_model_columns() -> list[sa.schema.SchemaItem]:
    """Columns and constraints of the single-row model registry."""
    states = ", ".join(f"'{s.value}'" for s in ModelState)
    return [
        sa.Column("id", sa.SmallInteger, primary_key=True, server_default=sa.text(str(REGISTRY_ROW_ID))),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("model_hash", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default=sa.text(f"'{ModelState.READY.value}'")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint(f"id = {REGISTRY_ROW_ID}", name=f"{EMBEDDING_MODEL}_single_row"),
        sa.CheckConstraint(f"state IN ({states})", name=f"{EMBEDDING_MODEL}_state"),
        sa.CheckConstraint("dimension > 0", name=f"{EMBEDDING_MODEL}_dimension_positive"),
    ]


def staging_columns() -> list[sa.Column[Any]]:
    """Columns of the staging table: one precomputed vector per row and target model."""
    return [
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column(EMBEDDING, VECTOR(), nullable=False),
        sa.Column("content_sha256", sa.LargeBinary, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("model_hash", sa.Text, nullable=False),
    ]


metadata = sa.MetaData()
knowledge_nodes = sa.Table(KNOWLEDGE_NODES, metadata, *knowledge_nodes_columns(None))
embedding_model = sa.Table(EMBEDDING_MODEL, metadata, *embedding_model_columns())
staging = sa.Table(STAGING, metadata, *staging_columns())


def content_sha256(content: sa.ColumnElement[Any]) -> sa.ColumnElement[bytes]:
    """The server-side hash of a row's content that staging compares, online and offline."""
    return sa.func.sha256(sa.func.convert_to(content, "UTF8"), type_=sa.LargeBinary)


def hnsw_index(column: str = EMBEDDING, *, name: str = HNSW_INDEX, concurrently: bool = False) -> sa.Index:
    """The HNSW index of the store, on `column` (EMBEDDING, or NEXT_EMBEDDING before a swap)."""
    table = sa.Table(KNOWLEDGE_NODES, sa.MetaData(), sa.Column(column, VECTOR()))
    return sa.Index(
        name,
        table.c[column],
        postgresql_using="hnsw",
        postgresql_ops={column: HNSW_OPCLASS},
        postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
        postgresql_concurrently=concurrently,
    )


def create_hnsw_index_sql(column: str = EMBEDDING, *, name: str = HNSW_INDEX, concurrently: bool = False) -> str:
    """`CREATE INDEX` for the HNSW index, as PostgreSQL will receive it."""
    return str(CreateIndex(hnsw_index(column, name=name, concurrently=concurrently)).compile(dialect=DIALECT))


def drop_hnsw_index_sql(*, name: str = HNSW_INDEX, concurrently: bool = False) -> str:
    """`DROP INDEX IF EXISTS` for an HNSW index of the store."""
    index = hnsw_index(name=name, concurrently=concurrently)
    return str(DropIndex(index, if_exists=True).compile(dialect=DIALECT))


def quoted(name: str) -> str:
    """A quoted identifier, for the few DDL statements SQLAlchemy has no construct for."""
    return DIALECT.identifier_preparer.quote(name)
