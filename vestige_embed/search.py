"""Nearest-neighbour search, refused whenever it would mix two embedding spaces."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.errors import SearchUnavailable
from vestige_embed.registry import read_registry
from vestige_embed.schema import ModelState, knowledge_nodes

#: pgvector's default `hnsw.ef_search`; asking for more neighbours raises it for the query.
DEFAULT_EF_SEARCH = 40


@dataclass(frozen=True)
class Hit:
    id: uuid.UUID
    content: str
    distance: float


def search_statement(probe: npt.ArrayLike, k: int) -> sa.Select[tuple[uuid.UUID, str, float]]:
    """Cosine distance, nearest first: the query the HNSW index serves."""
    distance = knowledge_nodes.c.embedding.cosine_distance(np.asarray(probe, dtype=np.float32))
    t = knowledge_nodes.c
    return sa.select(t.id, t.content, distance.label("distance")).order_by(distance).limit(k)


def vector_search(conn: Connection, probe: npt.ArrayLike, k: int = 10) -> list[Hit]:
    """The `k` rows nearest to `probe`; raises `SearchUnavailable` while a re-embed is unfinished."""
    registry = read_registry(conn)
    if registry.state is not ModelState.READY:
        raise SearchUnavailable(
            f"search is unavailable: the registry says '{registry.state.value}' (a re-embed away from "
            f"{registry.signature.name} did not finish), so stored vectors mix two embedding spaces. "
            "Re-run the same `vestige migrate reembed` command or `alembic upgrade head` to finish it."
        )
    vector = np.asarray(probe, dtype=np.float32)
    if vector.ndim != 1 or vector.shape[0] != registry.signature.dimension:
        raise SearchUnavailable(
            f"probe has shape {vector.shape}, but the store holds {registry.signature.dimension}-d vectors "
            f"of {registry.signature.name}; embed the query with that model"
        )
    if k > DEFAULT_EF_SEARCH:
        conn.execute(sa.text("SELECT set_config('hnsw.ef_search', :v, true)"), {"v": str(k)})
    rows = conn.execute(search_statement(vector, k))
    return [Hit(r.id, r.content, float(r.distance)) for r in rows]
