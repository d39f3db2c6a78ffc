"""The model registry row: which embedding space the stored vectors are in, and whether
search may be served from them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.errors import ReembedError
from vestige_embed.schema import EMBEDDING_MODEL, REGISTRY_ROW_ID, ModelState, embedding_model
from vestige_embed.signature import ModelSignature

_ROW = embedding_model.c.id == REGISTRY_ROW_ID


@dataclass(frozen=True)
class RegistryRow:
    signature: ModelSignature
    state: ModelState
    updated_at: datetime


def read_registry(conn: Connection) -> RegistryRow:
    """The registry row; a store without one was not created by vestige-embed's base revision."""
    t = embedding_model.c
    row = conn.execute(sa.select(t.model_name, t.dimension, t.model_hash, t.state, t.updated_at).where(_ROW)).first()
    if row is None:
        raise ReembedError(
            f"table {EMBEDDING_MODEL} has no row id={REGISTRY_ROW_ID}; the store was not created by "
            "vestige-embed's base revision. Run `alembic upgrade head` on an empty database first."
        )
    return RegistryRow(ModelSignature(row[0], row[1], row[2]), ModelState(row[3]), row[4])


def insert_registry(signature: ModelSignature) -> sa.Insert:
    """The statement that registers the initial model (base revision, online and offline)."""
    return embedding_model.insert().values(
        id=REGISTRY_ROW_ID,
        model_name=signature.name,
        dimension=signature.dimension,
        model_hash=signature.hash,
        state=ModelState.READY.value,
    )


def set_state(conn: Connection, state: ModelState) -> None:
    conn.execute(update_state(state))


def update_state(state: ModelState) -> sa.Update:
    return embedding_model.update().where(_ROW).values(state=state.value, updated_at=sa.func.now())


def register_model(signature: ModelSignature) -> sa.Update:
    """Step 7: the registry names the new model and says search may be served again."""
    return (
        embedding_model.update()
        .where(_ROW)
        .values(
            model_name=signature.name,
            dimension=signature.dimension,
            model_hash=signature.hash,
            state=ModelState.READY.value,
            updated_at=sa.func.now(),
        )
    )
