"""Bulk writers of online rows into Feast's SQLite and standalone-Redis online stores, in Feast's layout.

Feast 0.67's ``online_write_batch`` takes one ``ValueProto`` per value and writes row by row: SQLite one
``conn.execute`` per (entity, feature), Redis an ``HMGET`` of the stored event time, then an ``HSET`` and
an ``EXPIRE`` per entity through redis-py's pipeline (~15 us of client-side Python per command). These
writers take the serialized values (:mod:`adprior.store.online_values`) and write the same cells:

- SQLite: Feast's upsert statement, table name and connection, through one ``executemany`` per batch;
  the timestamps go through the same sqlite3 adapter Feast registers.
- Redis (``redis_type: redis``): the same hash per entity (key = serialized entity key + project; field
  ``_ts:<view>`` = the event time as a protobuf Timestamp, fields ``mmh3(<view>:<feature>)`` = values),
  the same ``key_ttl_seconds`` expiry and the same rule for rows not newer than what the store holds
  (skipped, unless ``skip_dedup``). Reading the stored times and writing the hashes run server-side in
  two small Lua scripts, one call per 500 entities instead of three commands per entity.

:func:`writer_for` picks the writer of an online store, or None (the engine then uses Feast's own
conversion and ``online_write_batch``): other stores, Redis Cluster / Sentinel, SQLite with vectors or
``enable_openai_compatible_store``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from adprior.store.online_values import sqlite_times

REDIS_CHUNK = 500  # entities per Lua call

# Stored event time of each key's hash field ARGV[1] ('' when absent: Lua arrays stop at nil).
_GET_TS = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGET', key, ARGV[1]) or ''
end
return out
"""
# ARGV = ttl, then per key: n, field_1, value_1, ..., field_{n/2}, value_{n/2}.
_WRITE = """
local ttl = tonumber(ARGV[1])
local pos = 2
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[pos])
  redis.call('HSET', key, unpack(ARGV, pos + 1, pos + n))
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  pos = pos + n + 1
end
return #KEYS
"""


@dataclass
class OnlineRows:
    """One batch of online rows: one entity per row, Feast's serialized bytes per feature.

    Attributes:
        keys: ``serialize_entity_key`` of each row.
        values: feature name -> serialized ``ValueProto`` per row (``b""`` = null), in the view's order.
        texts: feature name -> SQLite ``value_text`` per row (None when not needed).
        event_ts: naive UTC event time per row.
        created_ts: naive UTC created time per row (None where the view has none).
    """

    keys: list[bytes]
    values: dict[str, list[bytes]]
    texts: dict[str, list[str | None]] | None
    event_ts: list[datetime]
    created_ts: list[datetime | None]


Writer = Callable[[Any, Any, OnlineRows], int]  # (repo config, feature view, rows) -> rows written


class BulkWriter(NamedTuple):
    """An online store's bulk writer and what it wants of the rows it gets."""

    write: Writer
    with_text: bool  # rows carry SQLite's value_text
    key_order: bool  # a whole view's rows in serialized-key order (SQLite's index: see write_sqlite)


def writer_for(online_store: Any, online_config: Any) -> BulkWriter | None:
    """The bulk writer of Feast's SQLite / standalone Redis store, else None."""
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    if isinstance(online_store, SqliteOnlineStore):
        if getattr(online_config, "vector_enabled", False) or getattr(
            online_config, "enable_openai_compatible_store", False
        ):
            return None
        return BulkWriter(lambda config, fv, rows: write_sqlite(online_store, config, fv, rows), True, True)
    if isinstance(online_store, RedisOnlineStore):
        if str(getattr(online_config, "redis_type", "redis")).split(".")[-1] != "redis":
            return None
        return BulkWriter(lambda config, fv, rows: write_redis(online_store, config, fv, rows), False, False)
    return None


def write_sqlite(store: Any, config: Any, fv: Any, rows: OnlineRows) -> int:
    """Upsert ``rows`` into the view's table of Feast's SQLite store (one transaction), in the order given:
    the engine hands them over in key order (``BulkWriter.key_order``), the order of the table's index."""
    from feast.infra.online_stores.sqlite import _quote_id, _table_id

    conn = store._get_conn(config)
    table = _table_id(config.project, fv, config.registry.enable_online_feature_view_versioning)
    columns = ["entity_key", "feature_name", "value", "value_text", "event_ts", "created_ts"]
    update = ", ".join(f"{c} = excluded.{c}" for c in columns[2:])
    sql = (
        f"INSERT INTO {_quote_id(table)} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(entity_key, feature_name) DO UPDATE SET {update};"
    )
    event, created = sqlite_times(rows.event_ts), sqlite_times(rows.created_ts)
    names = list(rows.values)
    texts = rows.texts or {}
    cols = [(n, rows.values[n], texts.get(n) or [None] * len(rows.keys)) for n in names]

    def params() -> Iterator[tuple]:
        for i, (key, e, c) in enumerate(zip(rows.keys, event, created, strict=True)):
            for name, vals, txt in cols:
                yield (key, name, vals[i], txt[i], e, c)

    with conn:
        conn.executemany(sql, params())
    return len(rows.keys)


def _timestamps(event_ts: list[datetime]) -> tuple[list[bytes], list[int]]:
    """(serialized protobuf Timestamp, total nanoseconds) of each naive UTC event time, as Feast's Redis
    store computes them (``Timestamp.FromDatetime(make_tzaware(t))``), once per distinct time."""
    from feast.utils import make_tzaware
    from google.protobuf.timestamp_pb2 import Timestamp

    cache: dict[datetime, tuple[bytes, int]] = {}
    out_b, out_n = [], []
    for t in event_ts:
        hit = cache.get(t)
        if hit is None:
            ts = Timestamp()
            ts.FromDatetime(make_tzaware(t))
            hit = cache[t] = (ts.SerializeToString(), ts.seconds * 1_000_000_000 + ts.nanos)
        out_b.append(hit[0])
        out_n.append(hit[1])
    return out_b, out_n


def _stored_nanos(raw: bytes, cache: dict[bytes, int]) -> int:
    """Total nanoseconds of a stored ``_ts`` field (0 when absent), as Feast parses it."""
    if not raw:
        return 0
    n = cache.get(raw)
    if n is None:
        from google.protobuf.timestamp_pb2 import Timestamp

        ts = Timestamp()
        ts.ParseFromString(raw)
        n = cache[raw] = ts.seconds * 1_000_000_000 + ts.nanos
    return n


def write_redis(store: Any, config: Any, fv: Any, rows: OnlineRows) -> int:
    """Write ``rows`` into Feast's Redis store (standalone); returns the entities written (not skipped)."""
    from feast.infra.online_stores.helpers import _mmh3
    from feast.infra.online_stores.redis import _versioned_fv_name

    online = config.online_store
    client = store._get_client(online)
    get_ts, write = client.register_script(_GET_TS), client.register_script(_WRITE)
    project = config.project.encode("utf-8")
    view = _versioned_fv_name(fv, config)
    ts_field = f"_ts:{view}".encode()
    fields = [(_mmh3(f"{view}:{name}"), vals) for name, vals in rows.values.items()]
    keys = [k + project for k in rows.keys]
    ts_bytes, ts_nanos = _timestamps(rows.event_ts)
    keep = range(len(keys))
    if not online.skip_dedup:  # Feast: skip a row not newer than the stored (or an earlier queued) row
        with client.pipeline(transaction=False) as pipe:
            for s in range(0, len(keys), REDIS_CHUNK):
                get_ts(keys=keys[s : s + REDIS_CHUNK], args=[ts_field], client=pipe)
            stored = [raw for part in pipe.execute() for raw in part]
        parsed: dict[bytes, int] = {}
        latest: dict[bytes, int] = {}
        kept = []
        for i, key in enumerate(keys):
            seen = max(_stored_nanos(stored[i], parsed), latest.get(key, 0))
            if seen and ts_nanos[i] <= seen:
                continue
            latest[key] = ts_nanos[i]
            kept.append(i)
        keep = kept
    ttl = int(online.key_ttl_seconds or 0)
    n_fields = str(2 + 2 * len(fields))
    with client.pipeline(transaction=False) as pipe:
        for s in range(0, len(keep), REDIS_CHUNK):
            part = keep[s : s + REDIS_CHUNK]
            args: list[Any] = [ttl]
            for i in part:
                args += (n_fields, ts_field, ts_bytes[i])
                for f, vals in fields:
                    args += (f, vals[i])
            write(keys=[keys[i] for i in part], args=args, client=pipe)
        pipe.execute()
    return len(keep)
