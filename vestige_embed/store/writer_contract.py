"""The application contract: how an application writes while a model change may run.

In the transaction that writes rows of a target, before writing:

    model = model_for_write(conn, target)   # the model to embed with, locked
    vectors = embedder_for(model).embed(...)  # re-embed if you embedded with another

and write the vectors in that same transaction. The helper takes the table lock that
an INSERT or UPDATE takes anyway, then the registry row `FOR SHARE`: the order every
change takes them in. So a writer never deadlocks with a change: the writer waits for a
change holding the table, a change waits for the writer's commit, and a row is never
written with the vector of a model the registry no longer names.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from vestige_embed.errors import ReembedError
from vestige_embed.target import DEFAULT_TARGET, ModelSignature, Statements, Target


def model_for_write(conn: Connection, target: Target = DEFAULT_TARGET) -> ModelSignature:
    """The signature to embed this transaction's writes with; holds it until the transaction ends."""
    st = Statements(target)
    conn.execute(st.writer_lock())
    row = conn.execute(st.model_for_write()).first()
    if row is None:
        raise ReembedError(f"{target.describe()} is not registered: vestige-embed does not know its model")
    return ModelSignature(row[0], row[1], row[2])
