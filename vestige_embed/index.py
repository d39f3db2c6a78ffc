"""The HNSW index: whether it is there and valid, dropping it, and building it fast.

A graph that does not fit in `maintenance_work_mem` makes pgvector fall back to a far
slower on-disk build (100k x 384: >300 s at the 64MB default, ~100 s at 1GB), so the
build is sized from the row count and dimension, and gets parallel workers.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.schema import (
    EMBEDDING,
    HNSW_INDEX,
    HNSW_M,
    KNOWLEDGE_NODES,
    create_hnsw_index_sql,
    drop_hnsw_index_sql,
    quoted,
)

_MB = 1 << 20
MIN_BUILD_MEMORY_MB = 64
#: Per-element overhead of pgvector's in-memory graph beyond the vector itself (measured
#: order of magnitude: element header, tuple ids, neighbour lists of both layers).
_ELEMENT_OVERHEAD_BYTES = 256
_NEIGHBOR_BYTES = 16
_HEADROOM = 1.3


def index_validity(conn: Connection, name: str = HNSW_INDEX) -> bool | None:
    """True valid, False INVALID (an interrupted CONCURRENTLY build), None absent."""
    return conn.execute(
        sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": quoted(name)},
    ).scalar()


def index_definition(conn: Connection, name: str = HNSW_INDEX) -> str | None:
    return conn.execute(sa.text("SELECT pg_get_indexdef(to_regclass(:name))"), {"name": quoted(name)}).scalar()


def drop_index(conn: Connection, name: str = HNSW_INDEX, *, concurrently: bool = False) -> None:
    conn.execute(sa.text(drop_hnsw_index_sql(name=name, concurrently=concurrently).strip()))


def create_index(
    conn: Connection, column: str = EMBEDDING, *, name: str = HNSW_INDEX, concurrently: bool = False
) -> None:
    conn.execute(sa.text(create_hnsw_index_sql(column, name=name, concurrently=concurrently).strip()))


def build_memory_mb(rows: int, dimension: int, cap_mb: int) -> int:
    """`maintenance_work_mem` (MB) that holds the whole graph, within [64MB, cap_mb]."""
    per_row = 4 * dimension + 2 * HNSW_M * _NEIGHBOR_BYTES + _ELEMENT_OVERHEAD_BYTES
    wanted = int(rows * per_row * _HEADROOM / _MB) + 1
    return max(MIN_BUILD_MEMORY_MB, min(wanted, cap_mb))


def build_memory_sql(dimension: int, cap_mb: int) -> str:
    """`build_memory_mb` as a SQL expression over the live row count, for the offline script."""
    per_row = 4 * dimension + 2 * HNSW_M * _NEIGHBOR_BYTES + _ELEMENT_OVERHEAD_BYTES
    rows = f"(SELECT count(*) FROM {quoted(KNOWLEDGE_NODES)})"
    wanted = f"(floor({rows} * {per_row} * {_HEADROOM} / {_MB})::bigint + 1)"
    return f"greatest({MIN_BUILD_MEMORY_MB}, least({wanted}, {cap_mb}))::text || 'MB'"


def build_settings(rows: int, dimension: int, *, cap_mb: int, workers: int, explicit_mb: int | None) -> dict[str, str]:
    """The session settings of an index build, as `set_config` takes them."""
    memory = explicit_mb if explicit_mb is not None else build_memory_mb(rows, dimension, cap_mb)
    return {"maintenance_work_mem": f"{memory}MB", "max_parallel_maintenance_workers": str(workers)}


def build_index(
    conn: Connection,
    settings: dict[str, str],
    column: str = EMBEDDING,
    *,
    name: str = HNSW_INDEX,
    concurrently: bool = False,
) -> float:
    """Build the index with `settings`; returns seconds. Plain: transaction-local settings.
    Concurrently (in autocommit): session settings, restored afterwards."""
    started = time.perf_counter()
    if not concurrently:
        apply_settings(conn, settings, local=True)
        create_index(conn, column, name=name)
        return time.perf_counter() - started
    previous = apply_settings(conn, settings, local=False)
    try:
        create_index(conn, column, name=name, concurrently=True)
    finally:
        apply_settings(conn, previous, local=False)
    return time.perf_counter() - started


def apply_settings(conn: Connection, settings: dict[str, str], *, local: bool) -> dict[str, str]:
    """Set each setting (transaction-local or session); returns the previous values."""
    previous: dict[str, str] = {}
    for name, value in settings.items():
        previous[name] = conn.execute(sa.text("SELECT current_setting(:n)"), {"n": name}).scalar_one()
        conn.execute(sa.text("SELECT set_config(:n, :v, :local)"), {"n": name, "v": value, "local": local})
    return previous
