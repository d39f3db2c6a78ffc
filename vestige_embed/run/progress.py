"""Progress of a data pass: the protocol the run reports to, and its two displays.

A tqdm bar on a terminal (log records print above it, not through it), periodic log
lines in deploy logs, where a redrawn line would be noise. Both say rows, rows/s and ETA
only once there is a rate to say them from. The total may be an estimate (counted before
the run's lock, while writers went on): past it, the total grows with the rows done.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def finish(self) -> None:
        pass


log = logging.getLogger("vestige_embed.progress")

LOG_EVERY_SECS = 10.0


def _nothing_to_do(label: str) -> None:
    log.info("%s: nothing to embed (every row is staged or up to date)", label)


class LogProgress:
    """`label: 1,200/4,700 rows (26%), 310 rows/s, ETA 00:11` every LOG_EVERY_SECS."""

    def __init__(self, label: str, every: float = LOG_EVERY_SECS) -> None:
        self.label, self.every = label, every
        self.total = self.done = 0
        self.started = self.last = 0.0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started = self.last = time.monotonic()
        if total:
            log.info("%s: %s rows to embed", self.label, f"{total:,}")

    def advance(self, rows: int) -> None:
        self.done += rows
        self.total = max(self.total, self.done)
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            log.info("%s", self.line(now - self.started))

    def finish(self) -> None:
        if self.total:
            log.info("%s", self.line(time.monotonic() - self.started))
        else:
            _nothing_to_do(self.label)

    def line(self, elapsed: float) -> str:
        from tqdm import tqdm

        head = f"{self.label}: {self.done:,}/{self.total:,} rows ({100 * self.done / self.total:.0f}%)"
        if self.done == 0 or elapsed <= 0:
            return f"{head}, rate not measured yet"
        rate = self.done / elapsed
        left = tqdm.format_interval((self.total - self.done) / rate)
        return f"{head}, {rate:,.0f} rows/s, ETA {left}, {tqdm.format_interval(elapsed)} so far"


class BarProgress:
    """tqdm's bar; while it shows, the console's log records are written above it."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label, self.stream = label, stream
        self._done = 0
        self._bar: Any = None
        self._redirect: contextlib.ExitStack | None = None

    def start(self, total: int) -> None:
        self._done = 0
        if total == 0:
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect = contextlib.ExitStack()
        self._redirect.enter_context(logging_redirect_tqdm())
        self._bar = tqdm(
            total=total, desc=self.label, unit=" rows", unit_scale=False, file=self.stream, dynamic_ncols=True
        )

    def advance(self, rows: int) -> None:
        self._done += rows
        if self._bar is not None:
            if self._done > self._bar.total:
                self._bar.total = self._done
            self._bar.update(rows)

    def finish(self) -> None:
        if self._bar is None and self._done == 0:
            _nothing_to_do(self.label)
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None


def progress_for(label: str, stream: TextIO | None = None) -> Progress:
    """A bar when `stream` (stderr by default) is a terminal, log lines otherwise."""
    stream = stream or sys.stderr
    return BarProgress(label, stream) if stream.isatty() else LogProgress(label)
