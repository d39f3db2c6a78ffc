"""`vestige migrate status`: what an operator checks before, during and after a model change."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed import index, staging, typmod
from vestige_embed.registry import read_registry
from vestige_embed.schema import HNSW_INDEX, KNOWLEDGE_NODES, ModelState, knowledge_nodes, quoted
from vestige_embed.schema import staging as staging_table


def store_status(conn: Connection) -> dict[str, Any]:
    """Registry, column, index, rows and staging, as one JSON-able dict."""
    if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": quoted(KNOWLEDGE_NODES)}).scalar() is None:
        return {"store": "absent: run `alembic upgrade head` (or `make upgrade`)"}
    registry = read_registry(conn)
    validity = index.index_validity(conn, HNSW_INDEX)
    t = knowledge_nodes.c
    rows, nulls = conn.execute(
        sa.select(sa.func.count(), sa.func.count().filter(t.embedding.is_(None))).select_from(knowledge_nodes)
    ).one()
    staged = None
    if staging.staging_exists(conn):
        staged = int(conn.execute(sa.select(sa.func.count()).select_from(staging_table)).scalar_one())
    return {
        "registry": {
            **registry.signature.to_json(),
            "state": registry.state.value,
            "updated_at": registry.updated_at.isoformat(),
        },
        "search_may_be_served": registry.state is ModelState.READY,
        "column_dimension": typmod.column_dimension(conn),
        "index": {"name": HNSW_INDEX, "present": validity is not None, "valid": bool(validity)},
        "rows": int(rows),
        "rows_without_embedding": int(nulls),
        "staged_rows": staged,
    }


def format_status(status: dict[str, Any]) -> str:
    """The human form: one `key: value` line each, nested keys dotted."""
    lines: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            lines.append(f"{prefix}: {'-' if value is None else value}")

    walk("", status)
    return "\n".join(lines)
