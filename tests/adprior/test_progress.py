"""Progress reporting (adprior.progress): the text, and log lines instead of a bar without a terminal."""

from __future__ import annotations

import logging

import pytest

from adprior.progress import Progress, eta_text, progress_line


def test_progress_line_rate_and_eta() -> None:
    assert progress_line(50, 200, 50, 100.0) == "50/200 users (25 %), 0.500 users/s, ETA 5m00s"
    # a resumed run: 100 users were committed before, 20 run now in 10 s -> the rate counts only those 20
    assert progress_line(120, 200, 20, 10.0) == "120/200 users (60 %), 2.000 users/s, ETA 0m40s"
    assert progress_line(0, 10, 0, 0.0) == "0/10 users (0 %), 0.000 users/s, ETA ?"
    assert progress_line(1, 4, 1, 3600.0, unit="steps") == "1/4 steps (25 %), 0.000 steps/s, ETA 3h00m"
    assert eta_text(float("nan")) == "?" and eta_text(61) == "1m01s"


def test_progress_logs_lines_without_a_terminal(caplog: pytest.LogCaptureFixture) -> None:
    # pytest captures stdout/stderr: no terminal, so tqdm is disabled and lines are logged instead
    with (
        caplog.at_level(logging.INFO, logger="adprior.progress"),
        Progress(5, "eval rows", "rows", initial=1, every_s=0) as p,
    ):
        assert not p.tty
        p.update(2)
        p.update(2)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("eval rows: 3/5 rows (60 %)") and "ETA" in lines[0]
    assert lines[1].startswith("eval rows: 5/5 rows (100 %)")
    assert lines[-1].startswith("eval rows done: 5/5 rows in")  # the summary


def test_progress_throttles_lines(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="adprior.progress"):
        p = Progress(100, "steps", "steps", every_s=3600)
        for _ in range(99):
            p.update()
        assert not caplog.records  # nothing before every_s has passed
        p.update()  # the last item always logs
        summary = p.close()
    assert len(caplog.records) == 2 and summary["done"] == 100 and summary["run_now"] == 100
