"""One connection that reads rows and writes vectors without waiting for the server.

A locked data pass reads and writes on the run's own connection: under its ACCESS
EXCLUSIVE lock no other session can even read the table. Waiting for each statement's
answer left the server idle while the client decoded, embedded and encoded a batch, and
the client idle while the server wrote it: the two took turns on a machine with cores
for both. In libpq's pipeline mode the writes are queued (their answers read later) and
the rows are fetched a few chunks ahead, so the server always has the next statement
(`make bench` prints the data pass next to this raw write path).

Memory stays bounded: `AHEAD` fetched chunks of `CHUNK_BATCHES` batches, plus the writes
the server has not answered yet (at most those of two chunks, as a fetch answers after them).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from vestige_embed.embedders.base import Matrix
from vestige_embed.store.writes import VectorWriter
from vestige_embed.target import Statements

#: Batches per FETCH, and FETCHes queued ahead of the one being embedded.
CHUNK_BATCHES = 8
AHEAD = 2
#: Bytes of queued writes a local (Unix-socket) connection may hold while the server works:
#: about 20 batches of 384-d vectors, where the default (~200 KB) holds one and the server
#: waits whenever the client pauses (11 alternating rounds: the hashing pass 8% faster). The kernel
#: caps it at `net.core.wmem_max`. TCP sizes its buffers itself (setting one turns that off).
SEND_BUFFER = 4 << 20


@contextlib.contextmanager
def deeper_send_buffer(driver: psycopg.Connection[Any]) -> Iterator[None]:
    """`SEND_BUFFER` on a Unix-socket connection for the block, its own size after."""
    with socket.socket(fileno=os.dup(driver.pgconn.socket)) as sock:  # a duplicate: closing it keeps the connection
        if sock.family != socket.AF_UNIX:
            yield
            return
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        try:
            yield
        finally:
            # Linux keeps (and reports) twice the size it was given.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, before // 2 if sys.platform == "linux" else before)


class QueuedWrites:
    """`UPDATE ... FROM unnest(keys, vectors)` into one column, queued in pipeline mode;
    `rows_written` is the server's count once the block has ended. `by_address`: the keys
    are the rows' addresses (`Statements.write_vectors`)."""

    def __init__(self, conn: Connection, st: Statements, column: str, *, by_address: bool = False) -> None:
        # Its statement and parameters, sent by the driver.
        self.writer = VectorWriter(conn, st, column, by_address=by_address)
        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        self.driver: psycopg.Connection[Any] = driver
        self.sql = str(self.writer.statement.compile(dialect=conn.dialect))
        self.rows_written = 0
        self._unanswered: deque[psycopg.Cursor[Any]] = deque()
        self._pipeline: AbstractContextManager[Any] | None = None
        self._buffer = contextlib.ExitStack()

    def __enter__(self) -> QueuedWrites:
        self._buffer.enter_context(deeper_send_buffer(self.driver))
        try:
            self._pipeline = self.driver.pipeline()
            self._pipeline.__enter__()
        except BaseException:
            self._buffer.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        assert self._pipeline is not None
        try:
            self._pipeline.__exit__(None, None, None)  # a Sync, then every answer; raises the first error
            self._count_answered()
        except psycopg.Error as e:
            if error is None:
                raise _as_sqlalchemy(e, self.sql) from e
            # Else the block's own error is the one to report; this one is its echo.
        finally:
            self._buffer.close()
        if isinstance(error, psycopg.Error):
            raise _as_sqlalchemy(error, self.sql) from error

    def __call__(self, keys: list[object], vectors: Matrix) -> int:
        """Queue one batch; returns the rows queued (the server's count comes at the end)."""
        cursor = self.driver.cursor()
        cursor.execute(self.sql, self.writer.params(keys, vectors))
        self._unanswered.append(cursor)
        self._count_answered()
        return len(keys)

    def _count_answered(self) -> None:
        """Answers arrive in order; a cursor has its count once its answer was read."""
        while self._unanswered and self._unanswered[0].pgresult is not None:
            self.rows_written += max(self._unanswered.popleft().rowcount, 0)


class PipelinedPass(QueuedWrites):
    """Rows by content through a server-side cursor, fetched ahead, and their vectors
    written back (`pipeline.run_locked_pass` embeds them). `by_address`, only while
    `Statements.rows_stay_put`: rows are read with their addresses and written back there,
    not looked up by key (the raw write's index search: 3-5% of the server's work)."""

    def __init__(
        self,
        conn: Connection,
        st: Statements,
        column: str,
        batch_size: int,
        where: sa.ColumnElement[bool] | None = None,
        *,
        by_address: bool = False,
    ) -> None:
        super().__init__(conn, st, column, by_address=by_address)
        self.conn, self.st, self.where, self.batch_size = conn, st, where, batch_size
        self.fetch_sql = str(st.fetch_rows(batch_size * CHUNK_BATCHES).compile(dialect=conn.dialect))
        self._fetches: deque[psycopg.Cursor[Any]] = deque()
        self.rows_read = 0

    def __enter__(self) -> PipelinedPass:
        # Through SQLAlchemy: its values bound as usual.
        self.conn.execute(self.st.declare_rows(self.where, by_address=self.writer.by_address))
        super().__enter__()
        for _ in range(AHEAD):
            self._fetch()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        super().__exit__(kind, error, tb)
        if error is None:  # else the rollback closes it, and a CLOSE must not hide the error
            self.conn.execute(self.st.close_rows())  # the sort's memory and files, before the index build

    def batches(self) -> Iterator[tuple[list[Any], list[str]]]:
        """`(keys or addresses, contents)` of `batch_size` rows at a time."""
        chunk = self.batch_size * CHUNK_BATCHES
        while self._fetches:
            try:
                rows = self._fetches.popleft().fetchall()
            except psycopg.Error as e:
                raise _as_sqlalchemy(e, self.fetch_sql) from e
            self.rows_read += len(rows)
            if len(rows) == chunk:  # a short chunk was the last: the cursor is at its end
                self._fetch()
            self._count_answered()
            for start in range(0, len(rows), self.batch_size):
                part = rows[start : start + self.batch_size]
                yield [r[0] for r in part], [r[1] for r in part]

    def _fetch(self) -> None:
        # In binary: keys arrive as 16 bytes or 8 (addresses as 6), not text to parse (contents are text either way).
        cursor = self.driver.cursor(binary=True)
        cursor.execute(self.fetch_sql)
        # The server holds a pipeline's answers until asked: ask now, so the rows are here
        # (read while later writes are queued) before the batches ahead of them are done.
        self.driver.pgconn.send_flush_request()
        self._fetches.append(cursor)


def _as_sqlalchemy(error: psycopg.Error, statement: str) -> sa.exc.StatementError:
    """The exception SQLAlchemy raises for the same error on its own path (the CLI's and
    Alembic's handlers, and their hints by SQLSTATE, expect it)."""
    return sa.exc.DBAPIError.instance(statement, None, error, psycopg.Error)
