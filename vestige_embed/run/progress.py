"""Progress of a data pass: the protocol the run reports to, and its two displays.

A bar on a terminal, periodic log lines in deploy logs. Both go through `logging`
(the bar redraws one stderr line), so Alembic's logging configuration applies.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Protocol, TextIO


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
_BAR_WIDTH = 30


def _eta(done: int, total: int, elapsed: float) -> tuple[float, str]:
    rate = done / elapsed if elapsed > 0 else 0.0
    if rate <= 0 or done >= total:
        return rate, "0s"
    return rate, f"{(total - done) / rate:.0f}s"


class LogProgress:
    """`label: 1200/4700 rows (25%), 310 rows/s, ETA 11s` every LOG_EVERY_SECS."""

    def __init__(self, label: str, every: float = LOG_EVERY_SECS) -> None:
        self.label, self.every = label, every
        self.total = self.done = 0
        self.started = self.last = 0.0

    def start(self, total: int) -> None:
        self.total, self.done = total, 0
        self.started = self.last = time.monotonic()

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def finish(self) -> None:
        self._line(time.monotonic())

    def _line(self, now: float) -> None:
        rate, eta = _eta(self.done, self.total, now - self.started)
        pct = 100 * self.done / self.total if self.total else 100.0
        log.info("%s: %d/%d rows (%.0f%%), %.0f rows/s, ETA %s", self.label, self.done, self.total, pct, rate, eta)


class _ClearBar(logging.Filter):
    """Erases the bar's line before a log record is written to the same terminal."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def filter(self, record: logging.LogRecord) -> bool:
        self.stream.write("\r\033[K")
        return True


class BarProgress:
    """One redrawn line on the terminal: bar, rows, rows/s, ETA. Log lines print above it."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label, self.stream = label, stream
        self.total = self.done = 0
        self.started = 0.0
        self._clear = _ClearBar(stream)
        self._handlers: list[logging.Handler] = []

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self._handlers = [h for h in logging.getLogger().handlers if getattr(h, "stream", None) is self.stream]
        for handler in self._handlers:
            handler.addFilter(self._clear)
        self._draw()

    def advance(self, rows: int) -> None:
        self.done += rows
        self._draw()

    def finish(self) -> None:
        for handler in self._handlers:
            handler.removeFilter(self._clear)
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self) -> None:
        rate, eta = _eta(self.done, self.total, time.monotonic() - self.started)
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * _BAR_WIDTH)
        bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
        self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total} rows  {rate:,.0f} rows/s  ETA {eta}   ")
        self.stream.flush()


def progress_for(label: str, stream: TextIO | None = None) -> Progress:
    """A bar when `stream` (stderr by default) is a terminal, log lines otherwise."""
    stream = stream or sys.stderr
    return BarProgress(label, stream) if stream.isatty() else LogProgress(label)
