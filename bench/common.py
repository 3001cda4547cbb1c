"""What every benchmark records beside its numbers: the command, the commit, the machine."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(threads: int = 0, size: int = 2048, seconds: float = 3.0) -> float:
    """This machine's measured fp32 matmul rate, GFLOP/s (its compute limit here): ``size`` x ``size``
    products repeated for about ``seconds`` after one warm-up, on ``threads`` torch threads (0: torch's
    current setting)."""
    import time

    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(a, b)
        reps += 1
    return 2 * size**3 * reps / (time.perf_counter() - t0) / 1e9


def git_commit() -> str:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return res.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine(extra: dict | None = None) -> dict:
    """Platform, cores, load and memory, plus ``extra`` (e.g. library versions)."""
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 1024**3, 1)
    except ImportError:
        pass
    info.update(extra or {})
    return info


def _python() -> str:
    """The interpreter as typed from the cwd when it lies under it (.venv/bin/python), else its path."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def header(extra_machine: dict | None = None) -> dict:
    return {
        "command": " ".join(shlex.quote(a) for a in [_python(), *sys.argv]),
        "cwd": str(Path.cwd()),
        "git_commit": git_commit(),
        "machine": machine(extra_machine),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_report(report: dict, markdown: str, json_path: str | Path, md_path: str | Path) -> None:
    """Write a benchmark's JSON and markdown side by side and print the markdown."""
    for path, text in ((json_path, json.dumps(report, indent=2, default=str)), (md_path, markdown)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    logging.getLogger("bench").info("wrote %s and %s", json_path, md_path)
    print(markdown)


def header_lines(h: dict) -> list[str]:
    """Markdown bullet lines: the command, the commit, the machine, the start time."""
    m = h["machine"]
    versions = ", ".join(f"{k} {m[k]}" for k in ("torch", "transformers", "trl") if m.get(k))
    return [
        f"- command: `{h['command']}` (cwd `{h['cwd']}`)",
        f"- git commit: `{h['git_commit']}`",
        f"- machine: {m['nproc']} usable cores (cpu_count {m['cpu_count']}, {m['processor']}), "
        f"{m.get('memory_gib', '?')} GiB RAM, {m['platform']}, Python {m['python']}, "
        f"load avg at start {m['load_avg_1m']}" + (f", {versions}" if versions else ""),
        f"- started (UTC): {h['started_utc']}",
    ]


def table_lines(columns: list[tuple[str, str]], rows: list[dict], missing: str = "–") -> list[str]:
    """A markdown table: ``columns`` are (key, title) pairs, one line per row dict."""
    lines = ["| " + " | ".join(t for _, t in columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(missing if r.get(k) is None else str(r[k]) for k, _ in columns) + " |")
    return lines


@contextlib.contextmanager
def redis_env(enabled: bool = True) -> Iterator[str | None]:
    """A loopback ``redis-server`` (``tests.support.redis.RedisServer``) with ``ADPRIOR_REDIS`` pointing at it.

    On exit the server is stopped and the variable restored. Yields the server's address, or None (and
    starts nothing) when not ``enabled``.
    """
    if not enabled:
        yield None
        return
    from tests.support.redis import RedisServer

    old = os.environ.get("ADPRIOR_REDIS")
    redis = RedisServer()
    try:
        os.environ["ADPRIOR_REDIS"] = redis.start()
        logging.getLogger("bench").info("redis-server on %s", redis.address)
        yield redis.address
    finally:
        redis.stop()
        if old is None:
            os.environ.pop("ADPRIOR_REDIS", None)
        else:
            os.environ["ADPRIOR_REDIS"] = old
