"""What an online store holds, cell by cell, to compare two materialization engines (test_store_engine,
test_store_spark_engine): every SQLite row of Feast's tables, every Redis hash with its expiry."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adprior import store as st
from tests.support.store import END

FEAST_REDIS_TTL = 5184000  # key_ttl_seconds of the Redis yamls (60 days)


def sqlite_cells(db: Path) -> dict[str, list[tuple]]:
    """Every row of every adprior_* table of a SQLite online store (the markers table aside), sorted."""
    with contextlib.closing(sqlite3.connect(db)) as con:
        names = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0].startswith("adprior_") and r[0] != "adprior_materialized"
        ]
        return {n: sorted(con.execute(f'SELECT * FROM "{n}"').fetchall()) for n in sorted(names)}


def clear_sqlite(db: Path) -> None:
    """Delete every row of Feast's tables (the tables stay)."""
    names = list(sqlite_cells(db))
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        for name in names:
            con.execute(f'DELETE FROM "{name}"')


def redis_cells(port: int) -> dict[bytes, tuple[dict, bool]]:
    """Every hash of a loopback Redis (adprior's marker hash aside) and whether it expires in Feast's
    ``key_ttl_seconds`` (within an hour: the writes took place in the minutes before)."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=port)
    try:
        return {
            k: (r.hgetall(k), FEAST_REDIS_TTL - 3600 < r.ttl(k) <= FEAST_REDIS_TTL)
            for k in r.keys("*")
            if not k.startswith(b"adprior:materialized")
        }
    finally:
        r.close()


def flush_redis(port: int) -> None:
    """Empty a loopback Redis."""
    import redis

    r = redis.Redis(host="127.0.0.1", port=port)
    try:
        r.flushall()
    finally:
        r.close()


USER_REFS = [
    "user_behavior:active_advertiser_ids",
    "user_behavior:top_categories",
    "user_behavior:last_event_ts",
    "user_behavior:n_attributed",
    "user_profile:age",
    "user_profile:country",
]
ADV_REFS = ["advertiser_stats:name", "advertiser_stats:spend", "advertiser_stats:is_active"]


def online_reads(cfg: st.StoreConfig) -> tuple:
    """What the online views return for the small world's users (and an unknown one) and advertisers."""
    users = [1, 2, 3, 4]
    adv = st.get_store(cfg).get_online_features(
        features=ADV_REFS, entity_rows=[{"advertiser_id": a} for a in (101, 202, 505, 999)]
    )
    return st.lookup(cfg, users), st.lookup(cfg, users, USER_REFS), adv.to_dict()


def run_engine(cfg: st.StoreConfig, snapshot: Callable[[], object]) -> tuple:
    """Materialize the small world up to END, snapshot, then an older window again (06-10..06-12: the old
    prediction of user 1) and snapshot: (first snapshot, second snapshot, online_reads)."""
    st.materialize(cfg, end=END, start=END - timedelta(days=400))
    first = snapshot()
    st.materialize(cfg, end=datetime(2026, 6, 12, tzinfo=UTC), start=datetime(2026, 6, 10, tzinfo=UTC))
    return first, snapshot(), online_reads(cfg)
