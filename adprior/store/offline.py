"""The offline store: parquet partitions of the Feast repo's tables, and the day's feature tables.

:func:`write_partition` holds a frame to its table's contract (:func:`adprior.contracts.conform_table`)
and writes it atomically as ``<repo>/data/offline/<table>/<partition>.parquet``;
:func:`write_daily_features` builds the day's ``user_profile``, ``user_behavior`` and
``advertiser_stats`` partitions from the raw tables and the compiled examples.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from adprior.contracts import LIST_FIELDS, conform_table
from adprior.io import atomic_write_parquet
from adprior.store.config import StoreConfig, offline_dir
from world.schema import RawLayout

_PARTITION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9=_.-]*$")


def write_partition(cfg: StoreConfig, table: str, df: pd.DataFrame | pa.Table, partition: str) -> Path:
    """Validate ``df`` against ``table``'s schema and write it as ``<offline_dir>/<partition>.parquet``.

    The write is atomic (temporary file in the same folder, then ``os.replace``) and replaces an
    existing partition of the same name, so reruns are idempotent. The temporary name starts with
    '.', which parquet dataset readers (dask, pyarrow) skip.

    Args:
        cfg: the store.
        table: a table of :data:`adprior.contracts.TABLE_SCHEMAS` ('user_behavior', 'llm_predictions', ...).
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
