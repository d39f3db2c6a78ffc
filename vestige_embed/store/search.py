"""Nearest-neighbour search that cannot mix two embedding spaces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from vestige_embed.errors import SearchUnavailable
from vestige_embed.store.registry import read_registry
from vestige_embed.target import DEFAULT_TARGET, ModelSignature, ModelState, Statements, Target
from vestige_embed.target.statements import set_setting

#: SQLSTATE of pgvector's "different vector dimensions" (a stored vector of another size).
_DATA_EXCEPTION = "22000"
#: pgvector's default `hnsw.ef_search`; asking for more neighbours raises it for the query.
DEFAULT_EF_SEARCH = 40


@dataclass(frozen=True)
class Hit:
    key: Any
    content: str
    distance: float


def vector_search(
    conn: Connection,
    probe: npt.ArrayLike,
    k: int = 10,
    *,
    model: ModelSignature,
    target: Target = DEFAULT_TARGET,
) -> list[Hit]:
    """The `k` rows nearest to `probe`, which was embedded with `model`.

    Rows come back only while the registry says `ready` for exactly `model`, checked
    inside the search statement itself: a change that commits between a check and the
    query cannot slip in. `SearchUnavailable` says why nothing may be served.
    """
    vector = np.asarray(probe, dtype=np.float32)
    if vector.ndim != 1 or vector.shape[0] != model.dimension:
        raise SearchUnavailable(
            f"probe has shape {vector.shape}, but {model.name} makes {model.dimension}-d vectors; "
            "embed the query with the model the registry names"
        )
    if k > DEFAULT_EF_SEARCH:
        conn.execute(set_setting("hnsw.ef_search", str(k)))
    try:
        rows = conn.execute(Statements(target).search(model, k), {"probe": vector}).all()
    except DBAPIError as e:
        if getattr(e.orig, "sqlstate", None) != _DATA_EXCEPTION:
            raise
        raise SearchUnavailable(
            f"{target.describe()} holds vectors of another size than {model.describe()} makes, although the "
            "registry names that model: the column was changed outside vestige-embed (`vestige migrate status` "
            "shows it). Re-embed the store (`vestige migrate reembed --model NAME --dimension N`); this "
            "transaction is aborted"
        ) from e
    if not rows:
        _explain_empty(conn, target, model)
    return [Hit(r[0], r[1], float(r[2])) for r in rows]


def _explain_empty(conn: Connection, target: Target, model: ModelSignature) -> None:
    """No rows: an empty table, or the search was refused (the statement returns nothing then)."""
    registry = read_registry(conn, target)
    if registry.state is not ModelState.READY:
        raise SearchUnavailable(
            f"search on {target.describe()} is unavailable: the registry says '{registry.state.value}' "
            f"(a change away from {registry.signature.name} has not finished), so stored vectors may mix "
            "two embedding spaces. Finish the change: re-run the command that started it"
        )
    if registry.signature != model:
        raise SearchUnavailable(
            f"the probe was embedded with {model.describe()}, but {target.describe()} holds vectors of "
            f"{registry.signature.describe()}; embed the query with that model"
        )
