"""What the operator sees while a pass runs: rows, rate and ETA once there is a rate, and
other libraries' log lines in our format."""

from __future__ import annotations

import io
import logging

import pytest

from vestige_embed.embedders.fastembed_model import route_fastembed_logs
from vestige_embed.run.progress import BarProgress, LogProgress


def test_a_log_line_before_any_row_says_the_rate_is_not_measured_yet() -> None:
    progress = LogProgress("reembed")
    progress.start(3480)
    assert progress.line(elapsed=0.2) == "reembed: 0/3,480 rows (0%), rate not measured yet"


def test_a_log_line_gives_rate_and_eta_from_the_rows_done() -> None:
    progress = LogProgress("reembed")
    progress.start(4000)
    progress.advance(1000)
    assert progress.line(elapsed=10.0) == "reembed: 1,000/4,000 rows (25%), 100 rows/s, ETA 00:30, 00:10 so far"


def test_a_pass_with_nothing_to_embed_logs_so_and_draws_no_bar(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    progress = BarProgress("stage", stream)
    with caplog.at_level(logging.INFO):
        progress.start(0)
        progress.finish()
    assert stream.getvalue() == ""
    assert "stage: nothing to embed" in caplog.text


def test_the_bar_counts_rows_with_a_rate_only_once_it_has_one() -> None:
    stream = io.StringIO()
    progress = BarProgress("reembed", stream)
    progress.start(3480)
    first = stream.getvalue()
    progress.advance(3480)
    progress.finish()
    assert "0/3480" in first and "?" in first and "ETA 0s" not in first
    assert "3480/3480" in stream.getvalue()


def test_fastembed_log_records_reach_logging(caplog: pytest.LogCaptureFixture) -> None:
    from loguru import logger

    route_fastembed_logs()
    with caplog.at_level(logging.WARNING):
        logger.patch(lambda record: record.update(name="fastembed.common.model_management")).warning("hub slow")
    assert [(r.name, r.getMessage()) for r in caplog.records] == [("fastembed.common.model_management", "hub slow")]


def test_a_log_total_counted_before_the_lock_grows_with_rows_written_meanwhile() -> None:
    progress = LogProgress("reembed")
    progress.start(100)
    progress.advance(130)
    assert progress.line(elapsed=1.0) == "reembed: 130/130 rows (100%), 130 rows/s, ETA 00:00, 00:01 so far"


def test_the_bar_total_grows_with_rows_written_meanwhile() -> None:
    stream = io.StringIO()
    progress = BarProgress("reembed", stream)
    progress.start(100)
    progress.advance(130)
    progress.finish()
    assert "130/130" in stream.getvalue()
