"""The application's tables, as its code declares them (autogenerate compares with these)."""

from __future__ import annotations

import sqlalchemy as sa
from pgvector.sqlalchemy import VECTOR

metadata = sa.MetaData()

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    # The size follows the model vestige-embed registers for the column.
    sa.Column("embedding", VECTOR(), nullable=True),
)
