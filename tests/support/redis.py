"""A private, non-persistent loopback redis-server for tests and benchmarks (:class:`RedisServer`)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any


def free_port() -> int:
    """A free TCP port on the loopback interface (free now; a race with other processes is possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private, non-persistent redis-server on a loopback port (tests, benchmarks).

    ``start()`` / ``stop()`` may be called repeatedly; the port stays the same, so a client
    configured with :attr:`address` reconnects after a restart (a kill-and-restart test).
    """

    def __init__(self, port: int | None = None, binary: str = "redis-server") -> None:
        self.port = port or free_port()
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: the value for ``$ADPRIOR_REDIS``."""
        return f"127.0.0.1:{self.port}"

    def ping(self) -> bool:
        """True when the server answers PING."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
        )
        try:
            return bool(client.ping())
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False
        finally:
            client.close()

    def start(self, timeout: float = 10.0) -> str:
        """Start the server (no-op if running) and wait until it answers PING; returns the address.

        Raises:
            FileNotFoundError: the redis-server binary is not installed.
            RuntimeError: it exited or did not answer within ``timeout`` seconds.
        """
        if self.proc is not None and self.proc.poll() is None:
            return self.address
        exe = shutil.which(self.binary)
        if exe is None:
            raise FileNotFoundError(
                f"{self.binary!r} not found on PATH: install Redis (e.g. `apt-get install -y redis-server`)"
            )
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        cmd = [
            exe,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.ping():
                return self.address
            time.sleep(0.05)
        out = self._read_log()
        self.stop()
        raise RuntimeError(f"redis-server on {self.address} did not start: {out[-2000:]}")

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after ``timeout`` s); no-op if not running."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """Run a private redis-server on a free (or the given) loopback port; yields ``127.0.0.1:<port>``."""
    with RedisServer(port) as server:
        yield server.address
