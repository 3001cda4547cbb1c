"""The online store: :func:`materialize` pushes new offline rows to it, :func:`lookup` reads them back.

SQLite by default, Redis from ``$ADPRIOR_REDIS``. The rows are written by the yaml's ``batch_engine``:
:class:`adprior.store.engine.ArrowComputeEngine` in the default yamls, Feast's Spark engine in the Spark
yamls (whose session :func:`materialize` starts with the yaml's settings). Next to Feast's own bookkeeping (the registry's
materialization intervals) the online store keeps a "materialized up to" marker per view, so that a
store that lost its data (Redis restarted without persistence, a deleted SQLite file) is written again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from adprior.contracts import TIMESTAMP
from adprior.store.config import (
    StoreConfig,
    check_online,
    feast_output,
    get_store,
    has_offline_files,
    translate_outage,
)

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(ts: datetime) -> datetime:
    """Aware UTC datetime (naive input is taken as UTC)."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _source_rows(cfg: StoreConfig, fv: Any, start: datetime, end: datetime) -> int:
    """Distinct entities with offline rows in [start, end] (what Feast writes online); -1 if unknown."""
    try:
        path = Path(cfg.repo) / fv.batch_source.path
        keys = [e.name for e in fv.entity_columns]
        ds = pads.dataset(path, format="parquet")
        ts = pc.field(fv.batch_source.timestamp_field)
        t = ds.to_table(
            columns=keys, filter=(ts >= pa.scalar(start, TIMESTAMP)) & (ts <= pa.scalar(end, TIMESTAMP))
        )
        return t.group_by(keys).aggregate([]).num_rows if keys else t.num_rows
    except Exception:  # a count is a nicety, never a failure
        return -1


def _sqlite_path(cfg: StoreConfig, store: Any) -> Path:
    """The SQLite online database file of ``store`` (a ``feast.FeatureStore`` over ``cfg``)."""
    path = Path(store.config.online_store.path)
    return path if path.is_absolute() else Path(cfg.repo).resolve() / path


def _missing_sqlite_tables(db: Path, store: Any, views: list[Any]) -> list[str]:
    """The views among ``views`` whose table is not in the SQLite online database ``db`` (all if no file).

    Feast's ``apply`` creates a view's table only when its registry's infra changes, so a database file that
    was lost (and perhaps recreated empty by the next ``apply``) lacks tables the registry thinks exist."""
    from feast.infra.online_stores.sqlite import _table_id

    if not db.exists():
        return [fv.name for fv in views]
    with contextlib.closing(sqlite3.connect(db)) as con:
        have = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    versioned = store.config.registry.enable_online_feature_view_versioning
    return [fv.name for fv in views if _table_id(store.project, fv, versioned) not in have]


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
        with translate_outage(cfg, "materialize markers"):
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


def _start_spark_engine(store: Any) -> None:
    """Before Feast's Spark engine runs: executors get this interpreter (PYSPARK_PYTHON) and the session
    gets the yaml's settings (the engine's ``spark_conf`` over the Spark offline store's). Feast 0.67's
    engine would start it with its whole ``batch_engine`` block as settings, ``spark_conf`` ignored."""
    conf = store.config.batch_engine_config
    kind = conf.get("type") if isinstance(conf, dict) else conf
    if kind != "spark.engine":
        return
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    if SparkSession.getActiveSession() is not None:
        return
    settings = dict(getattr(store.config.offline_store, "spark_conf", None) or {})
    settings.update((conf.get("spark_conf") or {}) if isinstance(conf, dict) else {})
    SparkSession.builder.config(conf=SparkConf().setAll(list(settings.items()))).getOrCreate()


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
    missing = _missing_sqlite_tables(db, store, views) if db is not None else []
    if missing:
        log.warning(
            "materialize: the SQLite online store %s lacks the tables of %s (its file was lost or replaced); "
            "recreating them",
            db,
            ", ".join(missing),
        )
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
        if not has_offline_files(cfg, fv):  # dask cannot read an empty folder; nothing to write anyway
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
    if windows:
        _start_spark_engine(store)
    with translate_outage(cfg, "materialize"), feast_output("materialize"):
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
    with translate_outage(cfg, "online lookup"):
        resp = store.get_online_features(
            features=feats, entity_rows=rows, full_feature_names=full_feature_names
        )
        data = resp.to_dict()
    return [{k: _plain(v[i]) for k, v in data.items()} for i in range(len(rows))]
