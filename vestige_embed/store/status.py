"""`vestige migrate status`: what an operator checks before, during and after a model change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from vestige_embed.store import catalog
from vestige_embed.store.registry import find_registry
from vestige_embed.target import ModelState, Statements, Target


def store_status(conn: Connection, target: Target) -> dict[str, Any]:
    """Registry, column, index, rows and staging of one target, as one JSON-able dict."""
    st = Statements(target)
    if not _table_exists(conn, st):
        return {"target": target.describe(), "store": "absent: run `alembic upgrade head` (or `make upgrade`)"}
    registry = find_registry(conn, target)
    validity = catalog.index_validity(conn, st)
    staged = catalog.count(conn, st.count_staged()) if catalog.staging_exists(conn, st) else None
    return {
        "target": target.describe(),
        "registry": None
        if registry is None
        else {
            **registry.signature.to_json(),
            "state": registry.state.value,
            "updated_at": registry.updated_at.isoformat(),
        },
        "search_may_be_served": registry is not None and registry.state is ModelState.READY,
        "column_dimension": catalog.column_dimension(conn, st),
        "index": {"name": target.index, "present": validity is not None, "valid": bool(validity)},
        "rows": catalog.count(conn, st.count_rows()),
        "rows_without_embedding": catalog.count(conn, st.count_rows_without_vector()),
        "staged_rows": staged,
    }


def _table_exists(conn: Connection, st: Statements) -> bool:
    return catalog.column_type(conn, st, st.target.key) is not None


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
