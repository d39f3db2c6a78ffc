"""One run per target: a second run is refused at once, naming the one that holds it.

An advisory lock keyed by the target. Atomic runs hold it for their transaction (it goes
with the commit or rollback, whatever happens); runs that commit along the way hold it
for their session. The session is named (`application_name`) after the run, so the
refusal can say who holds the target.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from vestige_embed.errors import ReembedError
from vestige_embed.target import Statements, Target
from vestige_embed.target.statements import current_setting, set_setting

log = logging.getLogger("vestige_embed.reembed")

#: PostgreSQL keeps the first 63 bytes of an application_name.
_NAME_BYTES = 63


@contextlib.contextmanager
def run_lock(conn: Connection, target: Target, description: str, *, transaction: bool) -> Iterator[None]:
    """Hold `target`'s run lock for the block (`transaction`: until the transaction ends)."""
    st = Statements(target)
    name = description.encode()[:_NAME_BYTES].decode(errors="ignore")
    previous = str(conn.execute(current_setting("application_name")).scalar_one())
    conn.execute(set_setting("application_name", name, local=transaction))
    if not conn.execute(st.try_run_lock(transaction=transaction)).scalar_one():
        holder = conn.execute(st.run_lock_holder()).first()
        who = (
            "another session" if holder is None else f"pid {holder[0]} ('{holder[1]}', connected {holder[2]:%H:%M:%S})"
        )
        raise ReembedError(
            f"{target.describe()} is being changed by another vestige-embed run: {who}. Wait for it to finish "
            "(or stop it with pg_terminate_backend(pid)), then run again; nothing was changed"
        )
    try:
        yield
    finally:
        if not transaction:
            _release(conn, st, previous)


def _release(conn: Connection, st: Statements, application_name: str) -> None:
    """Best effort: after a failure inside a transaction the lock stays until the session ends."""
    try:
        conn.execute(st.release_run_lock())
        conn.execute(set_setting("application_name", application_name, local=False))
    except DBAPIError as e:
        log.debug("reembed: run lock kept until the session ends (%s)", e.orig)
