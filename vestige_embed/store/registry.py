"""The model registry: for each target, which embedding space its vectors are in and
whether search may be served from them. One row per (table, embedding column)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from vestige_embed.errors import ReembedError
from vestige_embed.store.catalog import RegistryShape, registry_shape
from vestige_embed.target import ModelSignature, ModelState, Statements, Target
from vestige_embed.target.statements import REGISTRY, create_registry


@dataclass(frozen=True)
class RegistryRow:
    signature: ModelSignature
    state: ModelState
    updated_at: datetime


def ensure_registry(conn: Connection) -> None:
    """Create the registry, or convert 0.1's single-row registry, when needed. A registry
    already in shape is left alone: its DDL would lock out readers until commit."""
    if registry_shape(conn) is not RegistryShape.CURRENT:
        for statement in create_registry():
            conn.execute(statement)


def find_registry(conn: Connection, target: Target) -> RegistryRow | None:
    """The target's row, None when the target is not registered (or there is no registry)."""
    shape = registry_shape(conn)
    if shape is RegistryShape.ABSENT:
        return None
    if shape is RegistryShape.LEGACY:
        raise ReembedError(
            f"table {REGISTRY} has vestige-embed 0.1's single-row shape; run `alembic upgrade head` "
            "(a revision converts it to one row per target, keeping its model)"
        )
    row = conn.execute(Statements(target).read_registry()).first()
    if row is None:
        return None
    return RegistryRow(ModelSignature(row[0], row[1], row[2]), ModelState(row[3]), row[4])


def read_registry(conn: Connection, target: Target) -> RegistryRow:
    found = find_registry(conn, target)
    if found is None:
        raise ReembedError(
            f"{target.describe()} is not registered in {REGISTRY}: vestige-embed does not know which model "
            "its vectors are in. Run `alembic upgrade head` on this database (the base revision creates and "
            "registers knowledge_nodes); register your own table with `vestige_embed.register_target`"
        )
    return found


def register_target(conn: Connection, target: Target, signature: ModelSignature) -> None:
    """Record that `target`'s vectors are `signature`'s (creating the registry if needed)."""
    ensure_registry(conn)
    existing = find_registry(conn, target)
    if existing is not None:
        if existing.signature == signature:
            return
        raise ReembedError(
            f"{target.describe()} is already registered with {existing.signature.describe()}; "
            "change its model with a re-embed, not a new registration"
        )
    conn.execute(Statements(target).insert_registry(signature))


def set_state(conn: Connection, target: Target, state: ModelState) -> None:
    conn.execute(Statements(target).set_state(state))
