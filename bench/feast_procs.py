"""Feast as processes for the benchmarks: the CLI, ``feast serve``, emptying an online store, redis-server's version.

``feast serve`` runs in its own process group, terminated (then killed) when its block ends, errors
included; a CLI call raises with the tail of its output when it fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def feast_exe() -> str:
    """The feast CLI of this interpreter's environment (else the one on PATH)."""
    exe = Path(sys.executable).parent / "feast"
    found = str(exe) if exe.exists() else shutil.which("feast")
    if not found:
        raise FileNotFoundError("the feast CLI is not installed in this environment")
    return found


def run_cli(args: list[str], timeout: float = 600.0) -> float:
    """Run ``feast <args>`` to completion; returns its wall time (s). Raises with its output on failure."""
    cmd = [feast_exe(), *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}:\n{(res.stdout + res.stderr)[-3000:]}")
    return seconds


def clear_online(cfg: Any) -> None:
    """Empty the online store of ``cfg`` (SQLite: every table's rows; Redis: FLUSHDB)."""
    if cfg.online == "sqlite":
        db = "online_store_spark.db" if cfg.offline == "spark" else "online_store.db"  # the yamls' paths
        with contextlib.closing(sqlite3.connect(Path(cfg.repo) / "data" / db)) as con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for t in tables:
                con.execute(f'DELETE FROM "{t}"')
            con.commit()
    else:
        import redis

        host, port = os.environ[cfg.redis_env].split(",")[0].rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port))
        try:
            client.flushdb()
        finally:
            client.close()


@contextlib.contextmanager
def feast_server(repo: Path, yaml_file: Path, timeout: float = 240.0) -> Iterator[str]:
    """Run ``feast serve`` on a free loopback port until the block ends; yields its base URL.

    The server runs in its own process group (gunicorn master + worker), which is terminated (then
    killed) on exit; its output goes to a temporary file, shown when it fails to start.
    """
    import requests

    from tests.support.redis import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        feast_exe(),
        "-c",
        str(repo),
        "-f",
        str(yaml_file),
        "serve",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--max-requests",
        "0",
    ]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True
        )
        try:
            t0 = time.perf_counter()
            while True:
                if proc.poll() is not None:
                    out.seek(0)
                    raise RuntimeError(
                        f"feast serve exited {proc.returncode}:\n"
                        f"{out.read().decode(errors='replace')[-3000:]}"
                    )
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                if time.perf_counter() - t0 > timeout:
                    out.seek(0)
                    raise RuntimeError(
                        f"feast serve did not answer within {timeout:.0f} s:\n"
                        f"{out.read().decode(errors='replace')[-3000:]}"
                    )
                time.sleep(0.25)
            log.info("feast serve up on %s after %.1f s", url, time.perf_counter() - t0)
            yield url
        finally:
            stop_group(proc)


def stop_group(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM the process group led by ``proc`` (started with start_new_session), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind by a master that exited first


def redis_version() -> str | None:
    """The version of the ``redis-server`` on PATH (None when there is none)."""
    exe = shutil.which("redis-server")
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    return next((p.split("=", 1)[1] for p in out.split() if p.startswith("v=")), out.strip() or None)
