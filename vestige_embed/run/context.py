"""One run's state: connection, target, plan, and the clock that becomes its report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from vestige_embed.embedders.base import Embedder
from vestige_embed.run.plan import ReembedPlan, ReembedReport, Strategy
from vestige_embed.run.progress import Progress
from vestige_embed.store.registry import RegistryRow
from vestige_embed.target import ModelSignature, Statements, Target
from vestige_embed.target.statements import CLIENT_CHECK_INTERVAL, CLIENT_CHECK_SETTING, current_setting, set_setting

AutocommitBlock = Callable[[], AbstractContextManager[object]]


def own_autocommit_block(conn: Connection) -> AutocommitBlock:
    """What Alembic's `autocommit_block()` does online, for runs without Alembic: commit,
    run the block in AUTOCOMMIT, then return to the connection's isolation level."""

    @contextlib.contextmanager
    def block() -> Iterator[None]:
        conn.commit()
        level = conn.get_isolation_level()
        conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield
        finally:
            conn.commit()  # ends SQLAlchemy's autobegun (no-op) transaction
            conn.execution_options(isolation_level=level)

    return block


#: A role's or database's setting that ends a session idle in a transaction: a run's
#: transaction is idle while the model embeds the next batch.
IDLE_TIMEOUT = "idle_in_transaction_session_timeout"


@contextlib.contextmanager
def idle_while_embedding(conn: Connection) -> Iterator[None]:
    """The session's idle-in-transaction timeout off for the run, restored after it."""
    previous = str(conn.execute(current_setting(IDLE_TIMEOUT)).scalar_one())
    conn.execute(set_setting(IDLE_TIMEOUT, "0", local=False))
    try:
        yield
    finally:
        # In an aborted transaction (atomic run) this fails, and the rollback reverts the SET.
        with contextlib.suppress(DBAPIError):
            conn.execute(set_setting(IDLE_TIMEOUT, previous, local=False))


@dataclass
class Clock:
    """Times the steps and how long writers are locked out; the report is built from it."""

    started: float = field(default_factory=time.perf_counter)
    spent: dict[str, float] = field(default_factory=dict)
    window_started: float | None = None
    window_ended: float | None = None
    blocked_since: float | None = None
    blocked: float = 0.0

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - began

    def writes_blocked(self) -> None:
        """A statement that makes writers wait until the transaction ends has run."""
        if self.blocked_since is None:
            self.blocked_since = time.perf_counter()

    def writes_released(self) -> None:
        if self.blocked_since is not None:
            self.blocked += time.perf_counter() - self.blocked_since
            self.blocked_since = None

    def open_window(self) -> None:
        if self.window_started is None:
            self.window_started = time.perf_counter()

    def close_window(self) -> None:
        self.window_ended = time.perf_counter()

    def report(self, strategy: Strategy, rows: int, from_staging: int) -> ReembedReport:
        self.writes_released()
        now = time.perf_counter()
        index = self.spent.get("index", 0.0)
        window = 0.0
        if self.window_started is not None:
            window = (self.window_ended or now) - self.window_started
        return ReembedReport(
            rows_updated=rows,
            duration_secs=round(now - self.started - index, 6),
            index_rebuild_secs=round(index, 6),
            rows_from_staging=from_staging,
            window_secs=round(window, 6),
            data_pass_secs=round(self.spent.get("data_pass", 0.0), 6),
            writes_blocked_secs=round(self.blocked, 6),
            strategy=strategy.value,
        )


@dataclass
class Run:
    """Everything the steps share. `target` is resolved against the catalog."""

    conn: Connection
    embedder: Embedder
    plan: ReembedPlan
    target: Target
    current: RegistryRow
    progress: Progress
    autocommit_block: AutocommitBlock
    clock: Clock = field(default_factory=Clock)
    #: Rows the locked pass will embed, when counted before the lock already (`steps.rows_to_embed`).
    expected_rows: int | None = None

    def __post_init__(self) -> None:
        self.st = Statements(self.target)
        self.signature: ModelSignature = self.embedder.signature()

    def transaction_settings(self) -> dict[str, str]:
        """Fail fast when the table is busy; never cut a table rewrite or index build short
        (a role's or database's `statement_timeout` would, after all the work); stop soon
        after the run's process dies instead of holding the table to the statement's end."""
        return {
            "lock_timeout": self.plan.lock_timeout,
            "statement_timeout": "0",
            CLIENT_CHECK_SETTING: CLIENT_CHECK_INTERVAL,
        }

    def set_transaction_settings(self) -> None:
        for name, value in self.transaction_settings().items():
            self.conn.execute(set_setting(name, value))

    @contextlib.contextmanager
    def restoring(self, names: Iterable[str]) -> Iterator[None]:
        """Session settings changed in the block (outside a transaction) go back afterwards."""
        previous = {name: str(self.conn.execute(current_setting(name)).scalar_one()) for name in names}
        try:
            yield
        finally:
            for name, value in previous.items():
                self.conn.execute(set_setting(name, value, local=False))

    @contextlib.contextmanager
    def session_settings(self, settings: dict[str, str]) -> Iterator[None]:
        """Session settings for statements outside a transaction (CONCURRENTLY), restored after."""
        with self.restoring(settings):
            for name, value in settings.items():
                self.conn.execute(set_setting(name, value, local=False))
            yield
