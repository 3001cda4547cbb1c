"""The Feast feature store of adprior (design.md "Feast"): offline tables, apply, materialize, lookups.

The Feast repository lives in ``feature_repo/`` (definitions split like feast-workshop). This
module is what the CLI, the nightly job, ranking and retrieval call:

- :func:`write_partition` validates a frame against a table's pyarrow schema and writes it atomically
  as one parquet partition of the offline store (``<repo>/data/offline/<table>/<partition>.parquet``);
  :func:`write_daily_features` builds the day's ``user_profile``, ``user_behavior`` and
  ``advertiser_stats`` partitions from the raw tables and the compiled examples.
- :func:`apply` is ``feast apply`` from Python (either configuration), :func:`materialize` pushes
  new offline rows to the online store (SQLite by default, Redis from ``$ADPRIOR_REDIS``), and
  :func:`lookup` reads online features back as plain dicts.
- :class:`RedisServer` / :func:`redis_server` start a private loopback redis-server for tests and
  benchmarks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from adprior.contracts import BEHAVIOR_FIELDS, EXAMPLE_SCHEMA, LIST_FIELDS, PREDICTION_SCHEMA
from adprior.io import atomic_write_parquet
from world.schema import RawLayout

log = logging.getLogger(__name__)

_TS = pa.timestamp("us", tz="UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Offline feature tables written by this module (llm_predictions is written by batch inference with
# adprior.contracts.PREDICTION_SCHEMA). Every table has event_timestamp (when the row becomes
# known) and created_timestamp (when it was written; breaks ties between rows of one event time).
FEATURE_TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "user_profile": pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_timestamp", _TS),  # signup date 00:00 UTC
            ("created_timestamp", _TS),
            ("gender", pa.string()),
            ("age", pa.int64()),
            ("user_state", pa.string()),
            ("country", pa.string()),
        ]
    ),
    "user_behavior": pa.schema(
        [
            ("user_id", pa.int64()),
            ("event_timestamp", _TS),  # anchor date x + 1 day 00:00 UTC: built from events before it
            ("created_timestamp", _TS),
            ("anchor_date", pa.date32()),
            *(EXAMPLE_SCHEMA.field(c) for c in ("n_attributed", "n_matched")),
            ("n_active_advertisers", pa.int64()),  # len(active_advertiser_ids)
            # the examples' behaviour lists and last event time, with the examples' types
            *(
                EXAMPLE_SCHEMA.field(c)
                for c in ("active_advertiser_ids", "active_advertisers", *BEHAVIOR_FIELDS, "last_event_ts")
            ),
        ]
    ),
    "advertiser_stats": pa.schema(
        [
            ("advertiser_id", pa.int64()),
            ("event_timestamp", _TS),  # dt + 1 day 00:00 UTC: a day's stats are known when it ends
            ("created_timestamp", _TS),
            ("dt", pa.date32()),
            ("spend", pa.float64()),
            ("revenue", pa.float64()),
            ("bid_type", pa.string()),
            ("name", pa.string()),
            ("category", pa.string()),  # '>'-separated path
            ("brand_group", pa.string()),
            ("is_active", pa.bool_()),
        ]
    ),
}
TABLE_SCHEMAS: dict[str, pa.Schema] = {**FEATURE_TABLE_SCHEMAS, "llm_predictions": PREDICTION_SCHEMA}
# Columns that may never be null; (entity, event_timestamp) must also be unique within a partition.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "user_profile": ("user_id", "event_timestamp"),
    "user_behavior": ("user_id", "event_timestamp"),
    "advertiser_stats": ("advertiser_id", "event_timestamp"),
    "llm_predictions": ("user_id", "event_timestamp"),
}
_NOT_NULL_EXTRA = ("created_timestamp",)
_PARTITION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9=_.-]*$")


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
    return FeatureStore(repo_path=str(repo), fs_yaml_file=repo / path.name)


PROJECT_REPO = Path(__file__).resolve().parents[1] / "feature_repo"  # the definitions shipped with adprior
_REPO_FILES = ("*.py", "*.yaml", ".feastignore", "README.md")


def init_repo(repo: Path, source: Path = PROJECT_REPO) -> bool:
    """Make ``repo`` a Feast repo with adprior's definitions (a copy without data) unless it is one.

    A separate repo per experiment keeps its offline tables and registry apart from the default
    ``feature_repo/`` (two simulated worlds share user ids).

    Args:
        repo: the folder to create; left as it is when it already has a ``feature_store.yaml``.
        source: the repo whose definitions are copied.

    Returns:
        True when the definitions were copied.
    """
    repo = Path(repo)
    if (repo / "feature_store.yaml").exists():
        return False
    repo.mkdir(parents=True, exist_ok=True)
    for pattern in _REPO_FILES:
        for f in sorted(Path(source).glob(pattern)):
            shutil.copy2(f, repo / f.name)
    log.info("created Feast repo %s from %s", repo, source)
    return True


def offline_dir(cfg: StoreConfig, table: str) -> Path:
    """Folder of one offline table: ``<repo>/data/offline/<table>`` (a directory of parquet files)."""
    if table not in TABLE_SCHEMAS:
        raise KeyError(f"unknown offline table {table!r}; known: {sorted(TABLE_SCHEMAS)}")
    return Path(cfg.repo) / "data" / "offline" / table


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
def _translate_outage(cfg: StoreConfig, action: str) -> Iterator[None]:
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
    with _translate_outage(cfg, action):
        client = redis.Redis(host=nodes[0]["host"], port=int(nodes[0].get("port", 6379)), **kwargs)
        try:
            client.ping()
        finally:
            client.close()


# ----------------------------------------------------------------------------------------------- apply


@contextlib.contextmanager
def _repo_imports(repo: Path) -> Iterator[None]:
    """Make the repo's modules importable by their bare names (as ``feast apply`` does) for a while.

    Modules of the same names imported before (another copy of the repo, or an unrelated package)
    are set aside and restored afterwards, so two repos can be applied in one process.
    """
    names = {p.stem for p in repo.glob("*.py")} | {
        p.name for p in repo.iterdir() if (p / "__init__.py").exists()
    }

    def ours(mod: str) -> bool:
        return mod.split(".")[0] in names

    saved_modules = {k: sys.modules.pop(k) for k in list(sys.modules) if ours(k)}
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    sys.path.insert(0, str(repo))
    sys.dont_write_bytecode = True  # no __pycache__ inside the repo
    try:
        with contextlib.chdir(repo):
            yield
    finally:
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode


def apply(cfg: StoreConfig) -> None:
    """``feast apply`` for ``cfg`` from Python: register the repo's objects, create online tables.

    Imports the repo's .py files (minus ``.feastignore``) like the CLI does, then diffs them against
    the registry of the chosen yaml (objects removed from the repo are deleted from it).

    Raises:
        StoreUnavailable: the online store cannot be reached (Redis down).
    """
    from feast.project import Project
    from feast.repo_operations import apply_total_with_repo_instance, parse_repo

    repo = Path(cfg.repo).resolve()
    (repo / "data").mkdir(parents=True, exist_ok=True)  # registry and SQLite live there
    store = get_store(cfg)
    before = os.environ.get(OFFLINE_ENV)
    os.environ[OFFLINE_ENV] = cfg.offline  # data_sources.py: FileSource or SparkSource
    try:
        with _repo_imports(repo):
            contents = parse_repo(repo)
    finally:  # restored: the variable is also StoreConfig.offline's default
        if before is None:
            os.environ.pop(OFFLINE_ENV, None)
        else:
            os.environ[OFFLINE_ENV] = before
    if not contents.projects:
        contents.projects.append(Project(name=store.project, description=""))
    elif [p.name for p in contents.projects] != [store.project]:
        raise ValueError(
            f"repo defines projects {[p.name for p in contents.projects]}, yaml says {store.project!r}"
        )
    # Spark validates a source by reading it, and cannot read a folder without parquet files (the
    # file store does not read at apply time): skip the check until every table has data.
    empty = [
        ds.name
        for ds in contents.data_sources
        if cfg.offline == "spark" and getattr(ds, "path", None) and not any(Path(ds.path).glob("*.parquet"))
    ]
    if empty:
        log.warning("apply: no offline data yet for %s; Spark source validation skipped", sorted(empty))
    with _translate_outage(cfg, "feast apply"):
        apply_total_with_repo_instance(
            store, store.project, store.registry, contents, skip_source_validation=bool(empty)
        )


# ------------------------------------------------------------------------------------- offline tables


def _utc(ts: datetime) -> datetime:
    """Aware UTC datetime (naive input is taken as UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _prepare_series(s: pd.Series, typ: pa.DataType) -> pd.Series:
    """Pandas-side normalisation before conversion: timestamps to UTC, microseconds."""
    if pa.types.is_timestamp(typ) and pd.api.types.is_datetime64_any_dtype(s):
        s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
        return s.dt.floor("us")
    return s


def _first_bad(values: list[Any], typ: pa.DataType) -> tuple[int, Any, str]:
    """Index, value and error of the first element that does not convert to ``typ``."""
    for i, v in enumerate(values):
        try:
            pa.array([v], type=typ, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            return i, v, str(exc)
    return -1, None, ""


def _column(table: str, name: str, values: Any, typ: pa.DataType) -> pa.Array:
    """Convert one column to ``typ`` or raise ValueError naming table, column and first bad row."""
    if len(values) == 0:  # an empty pandas column has no meaningful dtype
        return pa.array([], type=typ)
    try:
        if isinstance(values, pa.ChunkedArray | pa.Array):
            arr = values.cast(typ)
            return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        return pa.array(_prepare_series(values, typ), type=typ, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raw = values.to_pylist() if isinstance(values, pa.ChunkedArray | pa.Array) else list(values)
        row, value, err = _first_bad(raw, typ)
        where = f"row {row}: value {value!r}" if row >= 0 else "a row"
        raise ValueError(
            f"table {table!r}, column {name!r}, {where} does not convert to {typ}: {err or exc}"
        ) from exc


def conform_table(table: str, df: pd.DataFrame | pa.Table) -> pa.Table:
    """Cast ``df`` to the schema of offline table ``table`` (column order included) and validate it.

    ``created_timestamp`` may be omitted (it is set to now). Checks: no missing or unexpected
    columns, every value converts to its column type, no null in key columns or inside lists, and no
    two rows with the same (entity, event_timestamp).

    Raises:
        ValueError: naming the table, the column and the first offending row.
    """
    if table not in TABLE_SCHEMAS:
        raise KeyError(f"unknown offline table {table!r}; known: {sorted(TABLE_SCHEMAS)}")
    schema = TABLE_SCHEMAS[table]
    cols = list(df.column_names) if isinstance(df, pa.Table) else [str(c) for c in df.columns]
    n = df.num_rows if isinstance(df, pa.Table) else len(df)
    extra = sorted(set(cols) - set(schema.names))
    if extra:
        raise ValueError(f"table {table!r}: unexpected columns {extra}; expected {schema.names}")
    arrays = []
    for field in schema:
        if field.name not in cols:
            if field.name == "created_timestamp":
                arrays.append(pa.array([datetime.now(UTC)] * n, type=field.type))
                continue
            raise ValueError(
                f"table {table!r}, column {field.name!r}: missing (expected columns {schema.names})"
            )
        values = df.column(field.name) if isinstance(df, pa.Table) else df[field.name]
        arrays.append(_column(table, field.name, values, field.type))
    out = pa.Table.from_arrays(arrays, schema=schema)
    for name in (*KEY_COLUMNS[table], *_NOT_NULL_EXTRA):
        nulls = pc.is_null(out.column(name))
        if pc.any(nulls).as_py():
            raise ValueError(
                f"table {table!r}, column {name!r}, row {pc.index(nulls, True).as_py()}: null in a key column"
            )
    for field in schema:
        if pa.types.is_list(field.type):
            col = out.column(field.name).combine_chunks()
            bad = pc.is_null(pc.list_flatten(col))
            if pc.any(bad).as_py():
                row = pc.list_parent_indices(col)[pc.index(bad, True).as_py()].as_py()
                raise ValueError(f"table {table!r}, column {field.name!r}, row {row}: null inside the list")
    keys = out.select(list(KEY_COLUMNS[table])).to_pandas()
    dup = keys.duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(
            f"table {table!r}, columns {list(KEY_COLUMNS[table])}, row {row}: duplicate key "
            f"{tuple(keys.iloc[row])} (one row per entity and event_timestamp per partition)"
        )
    return out


def write_partition(cfg: StoreConfig, table: str, df: pd.DataFrame | pa.Table, partition: str) -> Path:
    """Validate ``df`` against ``table``'s schema and write it as ``<offline_dir>/<partition>.parquet``.

    The write is atomic (temporary file in the same folder, then ``os.replace``) and replaces an
    existing partition of the same name, so reruns are idempotent. The temporary name starts with
    '.', which parquet dataset readers (dask, pyarrow) skip.

    Args:
        cfg: the store.
        table: 'user_profile' | 'user_behavior' | 'advertiser_stats' | 'llm_predictions'.
        df: the rows (pandas or pyarrow); see :func:`conform_table` for the checks.
        partition: file stem, e.g. ``dt=2026-06-15`` or ``all``.

    Returns:
        The path written.

    Raises:
        ValueError: the frame breaks the table's contract (message names table, column, row), or the
            partition name is not a plain file stem.
        OSError: the file cannot be written (names table and path); nothing partial is left.
    """
    if not _PARTITION_RE.match(partition):
        raise ValueError(f"table {table!r}: bad partition name {partition!r} (letters, digits, '=_.-' only)")
    data = conform_table(table, df)
    folder = offline_dir(cfg, table)
    path = folder / f"{partition}.parquet"
    try:
        atomic_write_parquet(data, path)  # complete or absent; the old partition stays until replaced
    except OSError as exc:  # e.g. a full disk: say which table as well
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(exc.errno, f"table {table!r}: cannot write partition {path}: {why}") from exc
    return path


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _list_col(s: pd.Series | None, n: int) -> list[list[Any]]:
    if s is None:
        return [[] for _ in range(n)]
    out = []
    for v in s:
        if v is None or (isinstance(v, float) and v != v):
            out.append([])
        else:
            out.append(list(v))
    return out


def user_profile_frame(users: pa.Table | pd.DataFrame, now: datetime | None = None) -> pd.DataFrame:
    """``user_profile`` rows from the raw ``users`` table (event_timestamp = signup date 00:00 UTC).

    A user without a signup date gets 1970-01-01 (the profile is then valid for any time).
    """
    u = users.to_pandas() if isinstance(users, pa.Table) else users
    signup = pd.to_datetime(u["signup_date"], errors="coerce").dt.normalize().fillna(pd.Timestamp(0))
    return pd.DataFrame(
        {
            "user_id": u["user_id"].astype("int64"),
            "event_timestamp": signup.dt.tz_localize("UTC"),
            "created_timestamp": pd.Timestamp(now or datetime.now(UTC)),
            "gender": u["gender"],
            "age": u["age"].astype("Int64"),
            "user_state": u["user_state"],
            "country": u["country"],
        }
    )


def user_behavior_frame(examples: pd.DataFrame, day: date, now: datetime | None = None) -> pd.DataFrame:
    """``user_behavior`` rows from the examples of anchor date ``day`` (event_timestamp = day + 1 day)."""
    ex = examples
    if "anchor_date" in ex.columns:
        anchors = pd.to_datetime(ex["anchor_date"].astype(str), errors="coerce").dt.date
        ex = ex[anchors == day]
    ex = ex.reset_index(drop=True)
    n = len(ex)
    ids = _list_col(ex.get("active_advertiser_ids"), n)
    out = pd.DataFrame(
        {
            "user_id": ex["user_id"].astype("int64"),
            "event_timestamp": pd.Series(
                [_midnight(day + timedelta(days=1))] * n, dtype="datetime64[us, UTC]"
            ),
            "created_timestamp": pd.Series([now or datetime.now(UTC)] * n, dtype="datetime64[us, UTC]"),
            "anchor_date": [day] * n,
            "n_attributed": ex["n_attributed"].astype("Int64"),
            "n_matched": ex["n_matched"].astype("Int64"),
            "n_active_advertisers": np.array([len(x) for x in ids], dtype=np.int64),
            "active_advertiser_ids": ids,
        }
    )
    for col in LIST_FIELDS:
        out[col] = _list_col(ex.get(col), n)
    out["last_event_ts"] = pd.to_datetime(ex["last_event_ts"], utc=True)
    return out


def advertiser_stats_frame(
    daily: pa.Table | pd.DataFrame, advertisers: pa.Table | pd.DataFrame, now: datetime | None = None
) -> pd.DataFrame:
    """``advertiser_stats`` rows: ``advertiser_daily`` (with its dt) joined with ``advertisers``."""
    d = daily.to_pandas() if isinstance(daily, pa.Table) else daily
    a = advertisers.to_pandas() if isinstance(advertisers, pa.Table) else advertisers
    a = a[["advertiser_id", "name", "category", "brand_group", "is_active"]]
    m = d[["advertiser_id", "dt", "spend", "revenue", "bid_type"]].merge(a, on="advertiser_id", how="left")
    dt = pd.to_datetime(m["dt"].astype(str))
    return pd.DataFrame(
        {
            "advertiser_id": m["advertiser_id"].astype("int64"),
            "event_timestamp": (dt + pd.Timedelta(days=1)).dt.tz_localize("UTC"),
            "created_timestamp": pd.Timestamp(now or datetime.now(UTC)),
            "dt": dt.dt.date,
            "spend": m["spend"],
            "revenue": m["revenue"],
            "bid_type": m["bid_type"],
            "name": m["name"],
            "category": m["category"],
            "brand_group": m["brand_group"],
            "is_active": m["is_active"].astype("boolean"),
        }
    )


def write_daily_features(
    cfg: StoreConfig, data_root: Path, examples: pd.DataFrame, day: date
) -> dict[str, int]:
    """Write the day's offline feature partitions; returns rows written per table.

    - ``user_profile``: every user of the raw ``users`` table, partition ``all`` (rewritten).
    - ``user_behavior``: the examples of anchor date ``day``, partition ``dt=<day>`` (rewritten).
    - ``advertiser_stats``: one partition ``dt=<d>`` per day d <= ``day`` of ``advertiser_daily``
      that has no partition yet (``advertisers`` attributes are today's: is_active, category... are
      not historised by the raw contract).
    """
    now = datetime.now(UTC)
    counts: dict[str, int] = {}
    users = RawLayout(Path(data_root)).read("users")
    write_partition(cfg, "user_profile", user_profile_frame(users, now), "all")
    counts["user_profile"] = users.num_rows
    behavior = user_behavior_frame(examples, day, now)
    write_partition(cfg, "user_behavior", behavior, f"dt={day.isoformat()}")
    counts["user_behavior"] = len(behavior)

    folder = offline_dir(cfg, "advertiser_stats")
    done = {p.stem.removeprefix("dt=") for p in folder.glob("dt=*.parquet")} if folder.exists() else set()
    daily = RawLayout(Path(data_root)).read("advertiser_daily")
    dts = pc.cast(daily.column("dt"), pa.string())
    wanted = sorted({d for d in dts.unique().to_pylist() if d <= day.isoformat() and d not in done})
    n_stats = 0
    if wanted:
        advertisers = RawLayout(Path(data_root)).read("advertisers")
        sub = daily.filter(pc.is_in(dts, value_set=pa.array(wanted)))
        frame = advertiser_stats_frame(sub, advertisers, now)
        for d, part in frame.groupby(frame["dt"].astype(str), sort=True):
            write_partition(cfg, "advertiser_stats", part, f"dt={d}")
            n_stats += len(part)
    counts["advertiser_stats"] = n_stats
    counts["advertiser_stats_days"] = len(wanted)
    return counts


# -------------------------------------------------------------------------------------- materialize


def _has_files(cfg: StoreConfig, fv: Any) -> bool:
    """Whether a batch view's offline folder holds at least one parquet file."""
    path = Path(cfg.repo) / fv.batch_source.path
    return path.is_dir() and any(path.glob("*.parquet"))


def _source_rows(cfg: StoreConfig, fv: Any, start: datetime, end: datetime) -> int:
    """Distinct entities with offline rows in [start, end] (what Feast writes online); -1 if unknown."""
    try:
        path = Path(cfg.repo) / fv.batch_source.path
        keys = [e.name for e in fv.entity_columns]
        ds = pads.dataset(path, format="parquet")
        ts = pc.field(fv.batch_source.timestamp_field)
        t = ds.to_table(columns=keys, filter=(ts >= pa.scalar(start, _TS)) & (ts <= pa.scalar(end, _TS)))
        return t.group_by(keys).aggregate([]).num_rows if keys else t.num_rows
    except Exception:  # a count is a nicety, never a failure
        return -1


def _sqlite_path(cfg: StoreConfig, store: Any) -> Path:
    """The SQLite online database file of ``store`` (a ``feast.FeatureStore`` over ``cfg``)."""
    path = Path(store.config.online_store.path)
    return path if path.is_absolute() else Path(cfg.repo).resolve() / path


_MARKER_KEY = "adprior:materialized"  # Redis hash / SQLite table naming each view's materialized end


def _markers(cfg: StoreConfig, store: Any, update: dict[str, str] | None = None) -> dict[str, str] | None:
    """Read (or update) the per-view "materialized up to" markers kept *in the online store itself*.

    The registry remembers what was materialized even when the online store loses its data (a
    Redis restarted without persistence, a deleted SQLite file); a marker lost with the data tells
    :func:`materialize` to write that view again. Returns None where markers are not kept (Redis
    cluster / sentinel: Feast's own client is used there).
    """
    if cfg.online == "redis":
        import redis
        from feast.infra.online_stores.redis import RedisOnlineStore

        if str(getattr(store.config.online_store, "redis_type", "redis")).split(".")[-1] != "redis":
            return None
        nodes, kwargs = RedisOnlineStore._parse_connection_string(os.environ.get(cfg.redis_env, ""))
        if not nodes:
            return None
        with _translate_outage(cfg, "materialize markers"):
            client = redis.Redis(host=nodes[0]["host"], port=int(nodes[0].get("port", 6379)), **kwargs)
            try:
                key = f"{_MARKER_KEY}:{store.project}"
                if update:
                    client.hset(key, mapping=update)
                return {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
            finally:
                client.close()
    path = _sqlite_path(cfg, store)
    if not path.exists() and not update:
        return {}
    with contextlib.closing(sqlite3.connect(path)) as con, con:
        con.execute("CREATE TABLE IF NOT EXISTS adprior_materialized (view TEXT PRIMARY KEY, end_ts TEXT)")
        if update:
            con.executemany(
                "INSERT OR REPLACE INTO adprior_materialized VALUES (?, ?)", sorted(update.items())
            )
        return dict(con.execute("SELECT view, end_ts FROM adprior_materialized").fetchall())


def materialize(
    cfg: StoreConfig, end: datetime, start: datetime | None = None, check: bool = True
) -> dict[str, Any]:
    """Push offline rows with event_timestamp up to ``end`` (inclusive) to the online store.

    Without ``start`` this is incremental per feature view: from the view's last materialized end
    (recorded in the registry of this yaml). A view never materialized starts at ``end - ttl``
    (the epoch when its ttl is 0), not at Feast's default ``now - ttl``, so simulated or
    back-filled dates are not silently skipped. A view already materialized up to ``end`` or later
    is left alone. With ``start``, every view is materialized over [start, end].

    Feast records a view's interval only after its rows were written, so after a failure (e.g.
    Redis down) rerunning the same call redoes exactly what is missing.

    A view whose offline table has no parquet file yet is left out (and not recorded), so it is
    picked up by a later run. A view the registry records as materialized but whose marker is
    missing from the online store (the store lost its data: see :func:`_markers`) is written again
    over its first-run window, so an incremental rerun never leaves it empty. With ``check`` (default) Redis is PINGed first, so an outage fails in
    milliseconds rather than after redis-py's retry backoff; a failure during the run is reported
    the same way.

    Returns:
        ``{"online_store", "end", "seconds", "views": {name: {"start", "end", "rows"}}, "skipped",
        "no_offline_data", "rewritten_lost"}``; rows = distinct entities with offline rows in the window
        (what Feast writes); skipped = views already materialized up to ``end``; rewritten_lost = views
        written again because the online store had lost them.

    Raises:
        StoreUnavailable: the online store cannot be reached (message names store type and address).
    """
    store = get_store(cfg)
    if check:
        check_online(cfg, "materialize")
    end = _utc(end)
    views = [fv for fv in store.list_feature_views() if fv.online]
    windows: dict[str, datetime] = {}
    skipped: list[str] = []
    empty: list[str] = []
    lost: list[str] = []
    db = _sqlite_path(cfg, store) if cfg.online == "sqlite" else None
    if db is not None and not db.exists() and any(fv.most_recent_end_time for fv in views):
        log.warning("materialize: the SQLite online store %s is gone; recreating its tables", db)
        store._get_provider().update_infra(
            store.project,
            tables_to_delete=[],
            tables_to_keep=views,
            entities_to_delete=[],
            entities_to_keep=store.list_entities(),
            partial=False,
        )
    markers = _markers(cfg, store)
    for fv in views:
        if not _has_files(cfg, fv):  # dask cannot read an empty folder; nothing to write anyway
            log.warning(
                "materialize: %s has no offline data yet (%s); left out", fv.name, fv.batch_source.path
            )
            empty.append(fv.name)
        elif start is not None:
            windows[fv.name] = _utc(start)
        elif fv.most_recent_end_time is not None and markers is not None and fv.name not in markers:
            log.warning(
                "materialize: the online store has no marker for %s (its data was lost or predates "
                "markers); writing it again from its first-run window",
                fv.name,
            )
            lost.append(fv.name)
            windows[fv.name] = end - fv.ttl if fv.ttl and fv.ttl.total_seconds() > 0 else EPOCH
        elif fv.most_recent_end_time is not None:
            last = _utc(fv.most_recent_end_time)
            if last >= end:
                skipped.append(fv.name)
            else:
                windows[fv.name] = last
        else:
            windows[fv.name] = end - fv.ttl if fv.ttl and fv.ttl.total_seconds() > 0 else EPOCH
    t0 = time.perf_counter()
    with _translate_outage(cfg, "materialize"):
        by_start: dict[datetime, list[str]] = {}
        for name, s in windows.items():
            by_start.setdefault(s, []).append(name)
        for s, names in sorted(by_start.items()):
            store.materialize(start_date=s, end_date=end, feature_views=sorted(names))
            if markers is not None:
                _markers(cfg, store, dict.fromkeys(names, end.isoformat()))
        if markers is not None:  # views already up to date keep (or regain) their marker
            _markers(cfg, store, {n: markers.get(n, end.isoformat()) for n in skipped} or None)
    seconds = time.perf_counter() - t0
    by_name = {fv.name: fv for fv in views}
    return {
        "online_store": cfg.online,
        "end": end.isoformat(),
        "seconds": round(seconds, 3),
        "views": {
            n: {"start": s.isoformat(), "end": end.isoformat(), "rows": _source_rows(cfg, by_name[n], s, end)}
            for n, s in sorted(windows.items())
        },
        "skipped": sorted(skipped),
        "no_offline_data": sorted(empty),
        "rewritten_lost": sorted(lost),
    }


# ------------------------------------------------------------------------------------------- lookups


def _plain(v: Any) -> Any:
    """Numpy / pandas scalars and arrays to plain Python values."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def lookup(
    cfg: StoreConfig,
    user_ids: list[int],
    features: list[str] | str = "llm_predictions_online",
    full_feature_names: bool = False,
) -> list[dict[str, Any]]:
    """Online features of users, one plain dict per user id (in order).

    Args:
        cfg: the store.
        user_ids: the users (unknown users get None values).
        features: a feature service name, or feature refs ``view:feature`` (a str containing ':' is
            one ref). Only user-keyed features: the on-demand views need a candidate advertiser.
        full_feature_names: keys as ``view__feature`` instead of ``feature``.

    Raises:
        StoreUnavailable: the online store cannot be reached.
    """
    store = get_store(cfg)
    if isinstance(features, str):
        feats: Any = [features] if ":" in features else store.get_feature_service(features)
    else:
        feats = list(features)
    rows = [{"user_id": int(u)} for u in user_ids]
    check_online(cfg, "online lookup")
    with _translate_outage(cfg, "online lookup"):
        resp = store.get_online_features(
            features=feats, entity_rows=rows, full_feature_names=full_feature_names
        )
        data = resp.to_dict()
    return [{k: _plain(v[i]) for k, v in data.items()} for i in range(len(rows))]


def _source_keys(cfg: StoreConfig, fv: Any) -> pd.DataFrame:
    """Distinct entity keys of a batch view's offline table (empty frame when it has no files)."""
    keys = [c.name for c in fv.entity_columns]
    if not _has_files(cfg, fv):
        return pd.DataFrame({k: pd.Series(dtype="int64") for k in keys})
    table = pads.dataset(Path(cfg.repo) / fv.batch_source.path, format="parquet").to_table(columns=keys)
    return table.group_by(keys).aggregate([]).to_pandas()


def _feature_refs(store: Any, features: list[str] | str) -> list[tuple[str, str]]:
    """(view, feature) pairs of a feature service name, one 'view:feature' ref, or a list of refs."""
    if isinstance(features, str) and ":" not in features:
        service = store.get_feature_service(features)
        return [(p.name_to_use(), f.name) for p in service.feature_view_projections for f in p.features]
    refs = [features] if isinstance(features, str) else list(features)
    return [(r.split(":", 1)[0], r.split(":", 1)[1]) for r in refs]


def historical_features(
    cfg: StoreConfig,
    entity_df: pd.DataFrame,
    features: list[str] | str = "ranking_llm",
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """Point-in-time features for every row of ``entity_df``: one output row per input row, same order.

    Works around Feast 0.67 file (dask) offline-store bugs that lose or break training rows when
    ``get_historical_features`` is called with several views at once: (1) entity rows that share the
    join keys of the views joined so far and the timestamp are collapsed into one (feast#6787,
    feast#5590: e.g. all candidates of one impression); (2) an entity row whose only feature rows lie
    outside ``[t - ttl, t]`` (e.g. only a later prediction) is dropped instead of getting nulls;
    (3) an entity without any row makes it raise when the source has several files. Here each batch
    view is fetched by Feast on the distinct (join keys, timestamp) of that view alone, restricted to
    entities its table has, and left-joined back; on-demand views then run their own UDF on the
    result. Point-in-time semantics are Feast's: the latest row with t - ttl <= event_timestamp <= t
    (ties: latest created_timestamp). Dask's merge runs with the 'tasks' shuffle (its default 'disk'
    shuffle is ~10x slower on a folder of many small files). The same calls go through the Spark
    offline store with ``cfg.offline='spark'`` (same values; its naive UTC timestamp features are
    made UTC-aware like the file store's).

    Args:
        cfg: the store.
        entity_df: join keys of the requested views, ``event_timestamp`` and the request fields of
            the on-demand views (``candidate_advertiser_id``); other columns are kept as they are.
        features: a feature service name, or feature refs ``view:feature``.
        full_feature_names: name columns ``view__feature`` instead of ``feature``.

    Returns:
        ``entity_df``'s columns followed by the requested features (nothing else).
    """
    import dask

    store = get_store(cfg)
    requested = _feature_refs(store, features)
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    names = [f"{v}__{f}" if full_feature_names else f for v, f in requested]
    if len(set(names)) < len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"feature names {dup} collide; pass full_feature_names=True")
    needed: dict[str, set[str]] = {}  # batch view -> features, incl. the inputs of requested ODFVs
    for view, feat in requested:
        if view in odfvs:
            for proj in odfvs[view].source_feature_view_projections.values():
                needed.setdefault(proj.name, set()).update(f.name for f in proj.features)
        else:
            needed.setdefault(view, set()).add(feat)
    out = entity_df.reset_index(drop=True).copy()
    ts = pd.to_datetime(out["event_timestamp"])
    key_ts = "__adprior_ts"
    out[key_ts] = ts.dt.tz_localize("UTC") if ts.dt.tz is None else ts.dt.tz_convert("UTC")
    got: dict[tuple[str, str], pd.Series] = {}
    for view, feats in sorted(needed.items()):
        fv = store.get_feature_view(view)
        keys = [c.name for c in fv.entity_columns]
        sub = out[[*keys, key_ts]].drop_duplicates()
        # Only entities the source has rows for: an entity without any row makes the dask store's
        # sort on the (then null) timestamps fail when the source has several files.
        sub = sub.merge(_source_keys(cfg, fv), on=keys, how="inner").rename(
            columns={key_ts: "event_timestamp"}
        )
        refs = [f"{view}:{f}" for f in sorted(feats)]
        cols = [f"{view}__{f}" for f in sorted(feats)]
        if len(sub):
            with dask.config.set({"dataframe.shuffle.method": "tasks"}):  # default 'disk': ~10x slower
                res = store.get_historical_features(
                    entity_df=sub, features=refs, full_feature_names=True
                ).to_df()
            res = res.rename(columns={"event_timestamp": key_ts})
            res[key_ts] = pd.to_datetime(res[key_ts], utc=True)
            for c in cols:  # the Spark store returns timestamp features naive (session time zone UTC)
                if isinstance(res[c].dtype, np.dtype) and res[c].dtype.kind == "M":
                    res[c] = res[c].dt.tz_localize("UTC")
        else:
            res = pd.DataFrame(columns=[*keys, key_ts, *cols])
            res[key_ts] = pd.to_datetime(res[key_ts], utc=True)
        merged = out[[*keys, key_ts]].merge(res[[*keys, key_ts, *cols]], on=[*keys, key_ts], how="left")
        for f, c in zip(sorted(feats), cols, strict=True):
            got[(view, f)] = merged[c]
    for name in sorted({v for v, _ in requested if v in odfvs}):
        odfv = odfvs[name]
        if odfv.mode != "pandas":
            raise ValueError(f"on-demand view {name!r}: only pandas mode is supported here")
        inputs = pd.DataFrame(index=out.index)
        for proj in odfv.source_feature_view_projections.values():
            for f in proj.features:
                inputs[f.name] = inputs[f"{proj.name_to_use()}__{f.name}"] = got[(proj.name, f.name)]
        for req in odfv.source_request_sources.values():
            for field in req.schema:
                inputs[field.name] = out[field.name]
        result = odfv.feature_transformation.transform(inputs).reset_index(drop=True)
        for f in odfv.features:
            got[(name, f.name)] = result[f.name]
    out = out.drop(columns=[key_ts])
    for (view, feat), col in zip(requested, names, strict=True):
        out[col] = got[(view, feat)].to_numpy()
    return out


# --------------------------------------------------------------------------------------------- redis


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
