"""The application contract: how an application writes while a model change may run.

In the transaction that writes rows of a target, before writing:

    model = model_for_write(conn, target)   # the model to embed with, locked
    vectors = embedder_for(model).embed(...)  # re-embed if you embedded with another

and write the vectors in that same transaction. While a change is being staged
(`pending_model` names its model), also stage what you wrote, so the staged vectors stay
fresh and the change (or a DBA's offline script) finds nothing left to embed:

    pending = pending_model(conn, target)
    if pending is not None:
        stage_written(conn, target, pending, keys, embedder_for(pending).embed(...))

The helper takes the table lock that
an INSERT or UPDATE takes anyway, then the registry row `FOR SHARE`: the order every
change takes them in. So a writer never deadlocks with a change: the writer waits for a
change holding the table, a change waits for the writer's commit, and a row is never
written with the vector of a model the registry no longer names.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Matrix
from vestige_embed.errors import ReembedError
from vestige_embed.store import catalog
from vestige_embed.store.writes import StagedRowsWriter
from vestige_embed.target import DEFAULT_TARGET, ModelSignature, Statements, Target


def model_for_write(conn: Connection, target: Target = DEFAULT_TARGET) -> ModelSignature:
    """The signature to embed this transaction's writes with; holds it until the transaction ends."""
    st = Statements(target)
    conn.execute(st.writer_lock())
    row = conn.execute(st.model_for_write()).first()
    if row is None:
        raise ReembedError(f"{target.describe()} is not registered: vestige-embed does not know its model")
    return ModelSignature(row[0], row[1], row[2])


def pending_model(conn: Connection, target: Target = DEFAULT_TARGET) -> ModelSignature | None:
    """The model a change is being staged for, if any (call after `model_for_write`)."""
    row = conn.execute(Statements(target).read_staged_model()).first()
    if row is None or row[0] is None:
        return None
    return ModelSignature(row[0], row[1], row[2])


#: Targets checked against the catalog, per driver connection: applications stage in every
#: write transaction, and re-reading the catalog each time cost five round trips. A key
#: column whose type changed under a live connection makes the write fail, never lie.
_CHECKED: weakref.WeakKeyDictionary[Any, dict[Target, Statements]] = weakref.WeakKeyDictionary()


def _statements(conn: Connection, target: Target) -> Statements:
    driver = conn.connection.driver_connection
    checked = _CHECKED.setdefault(driver, {})
    if target not in checked:
        checked[target] = Statements(catalog.resolve_target(conn, target))
    return checked[target]


def stage_written(
    conn: Connection, target: Target, signature: ModelSignature, keys: Sequence[Any], vectors: Matrix
) -> None:
    """Stage vectors of `signature` for rows this transaction wrote (after writing them)."""
    StagedRowsWriter(conn, _statements(conn, target), signature)(list(keys), vectors)
