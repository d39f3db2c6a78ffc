"""The operator warning printed before the first write of a batched re-embed."""

from __future__ import annotations

import sys
import time
from typing import TextIO

CONFIRM_SECS = 5

BANNER = """\
WARN: vestige migrate reembed is starting. Search results will be
WARN: incorrect until this run completes. Stop the MCP server now if
WARN: it is connected to this database. Press Ctrl-C within 5 seconds
WARN: to abort."""
#: With `--no-confirm` there is no wait, so no Ctrl-C window to offer.
BANNER_NO_WAIT = """\
WARN: vestige migrate reembed is starting. Search results will be
WARN: incorrect until this run completes. Stop the MCP server now if
WARN: it is connected to this database."""


def warn_and_wait(*, confirm: bool, stream: TextIO | None = None, seconds: int = CONFIRM_SECS) -> None:
    """Print the banner; unless `confirm` is False, give the operator `seconds` to press Ctrl-C."""
    out = stream or sys.stderr
    print(BANNER if confirm else BANNER_NO_WAIT, file=out, flush=True)
    if confirm:
        time.sleep(seconds)
