"""Progress of a long job: items done / total, rate, ETA, and a one-line summary at the end.

On a terminal :class:`Progress` draws a tqdm bar; without one (a scheduler, CI, ``| tee``, a log file) it
logs a line at most every ``every_s`` seconds and always at the end, so a non-TTY run shows the same facts
without a screen of carriage returns. The rate counts only the items done in this process (``initial``
items, e.g. the committed shards of a resumed run, do not inflate it). Every stage uses it: inference (the
driver counts the users of every Ray actor's finished shard), training steps, eval rows, the A/B days.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)


def eta_text(seconds: float) -> str:
    """``1h02m``, ``5m00s`` or ``?`` (unknown)."""
    if seconds == float("inf") or seconds != seconds:  # inf or NaN
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_line(done: int, total: int, run_now: int, seconds: float, unit: str = "users") -> str:
    """``done / total unit (pct), rate unit/s, ETA``; the rate is ``run_now`` items in ``seconds``."""
    rate = run_now / seconds if seconds > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("inf")
    return f"{done}/{total} {unit} ({100 * done / max(total, 1):.0f} %), {rate:.3f} {unit}/s, ETA {eta_text(eta)}"


class Progress:
    """A progress reporter: ``with Progress(total, 'eval rows') as p: ... p.update(n)``.

    Args:
        total: items expected.
        desc: what is being done (the bar's / log line's prefix).
        unit: the items' name.
        initial: items already done before this process (a resumed run).
        every_s: without a terminal, the least seconds between two log lines.
        logger: where the lines go (default: this module's logger).
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "items",
        initial: int = 0,
        every_s: float = 30.0,
        logger: logging.Logger | None = None,
    ) -> None:
        from tqdm import tqdm

        self.total, self.desc, self.unit, self.every_s = int(total), desc, unit, every_s
        self.done, self.run_now = int(initial), 0
        self.log = logger or log
        self.t0 = self.last = time.perf_counter()
        self.bar = tqdm(total=self.total, initial=self.done, desc=desc, unit=unit, disable=None)
        self.tty = not self.bar.disable

    def line(self) -> str:
        """The current ``done / total, rate, ETA`` text."""
        elapsed = time.perf_counter() - self.t0
        return progress_line(self.done, self.total, self.run_now, elapsed, self.unit)

    def update(self, n: int = 1) -> None:
        """``n`` more items done; a log line when there is no terminal and ``every_s`` has passed."""
        self.done += int(n)
        self.run_now += int(n)
        self.bar.update(int(n))
        now = time.perf_counter()
        if not self.tty and (now - self.last >= self.every_s or self.done >= self.total):
            self.last = now
            self.log.info("%s: %s", self.desc, self.line())

    def close(self) -> dict[str, Any]:
        """Close the bar, log the summary line, return ``{done, total, run_now, seconds, rate}``."""
        self.bar.close()
        seconds = time.perf_counter() - self.t0
        summary = {
            "done": self.done,
            "total": self.total,
            "run_now": self.run_now,
            "seconds": round(seconds, 2),
            "rate": round(self.run_now / seconds, 4) if seconds > 0 else None,
        }
        self.log.info(
            "%s done: %d/%d %s in %.1f s (%s %s/s)",
            self.desc,
            self.done,
            self.total,
            self.unit,
            seconds,
            summary["rate"],
            self.unit,
        )
        return summary

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
