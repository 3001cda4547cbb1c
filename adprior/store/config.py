"""Which Feast store adprior talks to, and what an unreachable online store looks like.

:class:`StoreConfig` picks the repo folder and the (offline, online) pair, :func:`yaml_path` its
``feature_store*.yaml``, :func:`get_store` the ``feast.FeatureStore`` over it (optionally with another
materialization engine than the yaml's), :func:`offline_dir` the
folder of an offline table. Connection failures of the online store (Redis down, SQLite locked) are
re-raised as :class:`StoreUnavailable` by :func:`translate_outage`, with the address but never a
password; :func:`check_online` PINGs Redis first so that an outage fails in milliseconds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adprior.contracts import TABLE_SCHEMAS


@dataclass
class StoreConfig:
    """Which Feast repository, offline store and online store to use."""

    repo: Path = Path("feature_repo")  # the Feast repo folder (holds the yamls and data/)
    online: str = "sqlite"  # 'sqlite' -> feature_store.yaml, 'redis' -> feature_store.redis.yaml
    redis_env: str = "ADPRIOR_REDIS"  # env var with the Redis connection string (host:port[,password=..])
    # 'file' (dask over the parquet folders) or 'spark' (Feast's Spark offline store over the same
    # folders: feature_store.spark.yaml / feature_store.spark-redis.yaml); apply passes it to
    # feature_repo/data_sources.py as $ADPRIOR_OFFLINE_STORE, which is also the default here (CLI use).
    offline: str = dataclasses.field(
        default_factory=lambda: os.environ.get("ADPRIOR_OFFLINE_STORE", "file")
    )  # 'file' (dask over parquet) | 'spark' (Feast Spark offline store); default from $ADPRIOR_OFFLINE_STORE
    # Feast `batch_engine` type for materialize instead of the yaml's: None = the yaml's (the Arrow engine
    # of adprior.store.engine in feature_store.yaml / .redis.yaml, Spark's in the Spark yamls); 'local' =
    # Feast's own local engine (the reference the benchmarks and equality tests compare with).
    batch_engine: str | None = None


class StoreUnavailable(RuntimeError):
    """The online store cannot be reached; the operation can be repeated once it is back."""


_YAMLS = {
    ("file", "sqlite"): "feature_store.yaml",
    ("file", "redis"): "feature_store.redis.yaml",
    ("spark", "sqlite"): "feature_store.spark.yaml",
    ("spark", "redis"): "feature_store.spark-redis.yaml",
}
OFFLINE_ENV = "ADPRIOR_OFFLINE_STORE"  # read by feature_repo/data_sources.py: FileSource or SparkSource


def yaml_path(cfg: StoreConfig) -> Path:
    """The feature_store yaml of ``(cfg.offline, cfg.online)`` inside ``cfg.repo``."""
    offline = cfg.offline
    if offline not in {o for o, _ in _YAMLS}:
        raise ValueError(
            f"unknown offline store {offline!r}; expected one of {sorted({o for o, _ in _YAMLS})}"
        )
    if cfg.online not in {o for _, o in _YAMLS}:
        raise ValueError(
            f"unknown online store {cfg.online!r}; expected one of {sorted({o for _, o in _YAMLS})}"
        )
    return Path(cfg.repo) / _YAMLS[(offline, cfg.online)]


def _redacted(connection_string: str) -> str:
    """``host:port[,db=N]`` of a Redis connection string, without password or username."""
    keep = [p for p in connection_string.split(",") if p and not re.match(r"\s*(password|username)\s*=", p)]
    return ",".join(keep) or "?"


def _address(cfg: StoreConfig) -> str:
    """Printable address of the online store (never a password)."""
    if cfg.online == "redis":
        value = os.environ.get(cfg.redis_env)
        return f"${cfg.redis_env}=" + (_redacted(value) if value else "<unset>")
    return str(
        Path(cfg.repo) / "data" / ("online_store_spark.db" if cfg.offline == "spark" else "online_store.db")
    )


def get_store(cfg: StoreConfig) -> Any:
    """A ``feast.FeatureStore`` over ``cfg.repo`` with the yaml of ``(cfg.offline, cfg.online)``.

    Raises:
        ValueError: online is 'redis' and the connection-string variable is not set.
    """
    from feast import FeatureStore

    if cfg.online == "redis" and not os.environ.get(cfg.redis_env):
        raise ValueError(
            f"online store 'redis' needs ${cfg.redis_env} (host:port[,password=...]), e.g. "
            f"{cfg.redis_env}=127.0.0.1:6379"
        )
    path = yaml_path(cfg)  # validates offline / online
    repo = Path(cfg.repo).resolve()
    if cfg.batch_engine is None:
        return FeatureStore(repo_path=str(repo), fs_yaml_file=repo / path.name)
    from feast.repo_config import load_repo_config

    config = load_repo_config(repo, repo / path.name)
    config.batch_engine_config = cfg.batch_engine
    return FeatureStore(repo_path=str(repo), config=config)


def offline_dir(cfg: StoreConfig, table: str) -> Path:
    """Folder of one offline table: ``<repo>/data/offline/<table>`` (a directory of parquet files)."""
    if table not in TABLE_SCHEMAS:
        raise KeyError(f"unknown offline table {table!r}; known: {sorted(TABLE_SCHEMAS)}")
    return Path(cfg.repo) / "data" / "offline" / table


def has_offline_files(cfg: StoreConfig, fv: Any) -> bool:
    """Whether a batch view's offline folder holds at least one parquet file."""
    path = Path(cfg.repo) / fv.batch_source.path
    return path.is_dir() and any(path.glob("*.parquet"))


# ---------------------------------------------------------------------------------------------- errors


def _unavailable_types(online: str) -> tuple[type[BaseException], ...]:
    """Exception types that mean 'the online store cannot be reached' (not a bug in our call)."""
    import redis.exceptions as rex

    if online == "redis":
        return (rex.ConnectionError, rex.TimeoutError, ConnectionError, TimeoutError)
    return (sqlite3.OperationalError,)


def _is_unavailable(cfg: StoreConfig, exc: BaseException) -> bool:
    if not isinstance(exc, _unavailable_types(cfg.online)):
        return False
    if isinstance(exc, sqlite3.OperationalError):  # 'no such table' etc. are bugs, not outages
        msg = str(exc).lower()
        return any(s in msg for s in ("locked", "unable to open", "disk i/o", "readonly"))
    return True


@contextlib.contextmanager
def translate_outage(cfg: StoreConfig, action: str) -> Iterator[None]:
    """Re-raise online-store connection failures as :class:`StoreUnavailable` with a clear message."""
    try:
        yield
    except Exception as exc:
        if not _is_unavailable(cfg, exc):
            raise
        detail = str(exc)
        value = os.environ.get(cfg.redis_env) or ""
        for secret in re.findall(r"(?:password|username)\s*=\s*([^,]+)", value):
            detail = detail.replace(secret, "***")
        raise StoreUnavailable(
            f"{action} failed: online store '{cfg.online}' at {_address(cfg)} is unavailable "
            f"({type(exc).__name__}: {detail}). Nothing is recorded as done for the failed part, so the "
            f"{action} can simply be repeated once the store is back."
        ) from exc


@contextlib.contextmanager
def feast_output(action: str) -> Iterator[None]:
    """Feast's ``print`` output of ``action`` (apply's "Created ...", materialize's "Materializing ...").

    Shown as is when the ``feast`` logger says INFO (``adprior -v``); otherwise logged at DEBUG, so a
    nightly at default verbosity shows adprior's own one-line summary of the step instead.
    """
    import io
    import logging

    if logging.getLogger("feast").isEnabledFor(logging.INFO):
        yield
        return
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        text = buf.getvalue().strip()
        if text:
            logging.getLogger("adprior.store").debug("%s (Feast's output):\n%s", action, text)


def check_online(cfg: StoreConfig, action: str = "online store check", timeout_s: float = 2.0) -> None:
    """Fail fast when the Redis online store does not answer PING (no-op for SQLite, Redis Cluster).

    One attempt without redis-py's retry backoff (which takes ~5-15 s to give up on a refused
    connection), with the same connection-string parsing as Feast. ``action`` names the operation
    in the error message.

    Raises:
        StoreUnavailable: Redis does not answer (message names the address, never the password).
    """
    if cfg.online != "redis":
        return
    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if str(getattr(get_store(cfg).config.online_store, "redis_type", "redis")).split(".")[-1] != "redis":
        return  # cluster / sentinel: leave it to Feast's client
    nodes, kwargs = RedisOnlineStore._parse_connection_string(os.environ.get(cfg.redis_env, ""))
    if not nodes:
        return
    kwargs.update(socket_connect_timeout=timeout_s, socket_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
    with translate_outage(cfg, action):
        client = redis.Redis(host=nodes[0]["host"], port=int(nodes[0].get("port", 6379)), **kwargs)
        try:
            client.ping()
        finally:
            client.close()
