"""Ending a short transaction on a connection that may be lent to us in autocommit mode."""

from __future__ import annotations

from sqlalchemy.engine import Connection


def commit(conn: Connection) -> None:
    """Commit, except inside an autocommit block (Alembic's owns its bookkeeping there, and
    every statement has already committed itself)."""
    driver = conn.connection.driver_connection
    if not getattr(driver, "autocommit", False):
        conn.commit()
