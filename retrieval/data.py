"""Training data of the two-tower retrieval model: catalogue, positives, user features.

- :func:`item_features`: the catalogue (raw ``items`` joined with ``advertisers``), one row per item.
- :func:`interactions`: positive (user, item) pairs of one objective from the raw ``events`` table:
  impressions (weight 1), clicks weighted by dwell time (:func:`dwell_weight`), or high-priority
  conversions that carry an item id (weight 1).
- :func:`user_features` (Feast point-in-time join at each row's time, for training) and
  :func:`online_user_features` (Feast online store, for serving) return the same columns
  (:data:`USER_FEATURE_COLUMNS`), so the model encodes both with one code path.
- :func:`is_null` / :func:`as_list`: how a (possibly null, possibly numpy) feature value is read.

The vocabularies and the encoding of these frames into the towers' index arrays are in
:mod:`retrieval.vocab`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as pads

from adprior import store
from adprior.store import StoreConfig
from retrieval.config import OBJECTIVES
from world.schema import CONVERSION_EVENTS, HIGH_PRIORITY_TYPES, RawLayout

log = logging.getLogger(__name__)

# Feast features of the user tower ('view:feature'); the short names must be unique.
USER_FEATURE_REFS: tuple[str, ...] = (
    "user_profile:gender",
    "user_profile:age",
    "user_profile:user_state",
    "user_profile:country",
    "user_behavior:active_advertiser_ids",
    "user_behavior:top_categories",
    "user_behavior:top_brands",
    "user_behavior:n_attributed",
    "user_behavior:n_matched",
)
USER_FEATURE_COLUMNS: tuple[str, ...] = tuple(r.split(":", 1)[1] for r in USER_FEATURE_REFS)
ITEM_COLUMNS: tuple[str, ...] = (
    "item_id",
    "advertiser_id",
    "advertiser_name",
    "category",
    "price",
    "brand_group",
)
INTERACTION_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "advertiser_id", "event_timestamp", "weight")
# Event types read per objective.
OBJECTIVE_EVENTS: dict[str, tuple[str, ...]] = {
    "impression": ("impression",),
    "click_dwell": ("click",),
    "conversion": CONVERSION_EVENTS,
}

# ------------------------------------------------------------------------------------------- helpers


def is_null(v: Any) -> bool:
    """None, NaN, NaT or pd.NA (lists and arrays are never null)."""
    if v is None:
        return True
    if isinstance(v, list | tuple | np.ndarray):
        return False
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def as_list(v: Any) -> list[Any]:
    """A feature value as a plain list: null -> [], numpy array -> list (null elements dropped)."""
    if is_null(v):
        return []
    if isinstance(v, np.ndarray):
        v = v.tolist()
    return [x for x in v if not is_null(x)]


def _utc(ts: date | datetime | pd.Timestamp) -> pd.Timestamp:
    """A day (00:00 UTC) or a time as an aware UTC timestamp (naive times are UTC)."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def dwell_weight(duration_s: Any, cap_s: float = 300.0, min_weight: float = 0.1) -> np.ndarray:
    """Click weight from dwell time: ``clip(log1p(d) / log1p(cap_s), min_weight, 1)``.

    Increases with the dwell up to ``cap_s`` seconds (weight 1, and no more beyond); a missing or
    negative dwell gets ``min_weight``.
    """
    d = pd.to_numeric(pd.Series(np.asarray(duration_s, dtype=object).ravel()), errors="coerce").to_numpy(
        float
    )
    w = np.log1p(np.clip(np.nan_to_num(d, nan=0.0), 0.0, None)) / math.log1p(cap_s)
    return np.clip(w, min_weight, 1.0)


# ---------------------------------------------------------------------------------------- raw tables


def item_features(data_root: Path) -> pd.DataFrame:
    """The catalogue: raw ``items`` joined with ``advertisers``, one row per item, sorted by item_id.

    Columns :data:`ITEM_COLUMNS`: item_id, advertiser_id, advertiser_name, category (the item's
    '>' path; the advertiser's when the item has none), price, brand_group.

    Raises:
        ValueError: a null or duplicated item_id / null advertiser_id (names the column and row).
    """
    items = (
        RawLayout(Path(data_root))
        .read("items", ["item_id", "advertiser_id", "category", "price"])
        .to_pandas()
    )
    for col in ("item_id", "advertiser_id"):
        bad = items[col].isna().to_numpy()
        if bad.any():
            raise ValueError(f"table 'items', column {col!r}, row {int(np.flatnonzero(bad)[0])}: null")
    dup = items["item_id"].duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise ValueError(
            f"table 'items', column 'item_id', row {row}: duplicate item id {items['item_id'].iloc[row]}"
        )
    adv = (
        RawLayout(Path(data_root))
        .read("advertisers", ["advertiser_id", "name", "brand_group", "category"])
        .to_pandas()
    )
    adv = adv.drop_duplicates("advertiser_id").rename(
        columns={"name": "advertiser_name", "category": "adv_category"}
    )
    m = items.merge(adv, on="advertiser_id", how="left")
    m["category"] = m["category"].where(m["category"].notna(), m["adv_category"])
    out = m[list(ITEM_COLUMNS)].astype({"item_id": "int64", "advertiser_id": "int64", "price": "float64"})
    return out.sort_values("item_id", kind="stable").reset_index(drop=True)


def interactions(
    data_root: Path,
    objective: str,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    *,
    dwell_cap_s: float = 300.0,
    dwell_min_weight: float = 0.1,
) -> pd.DataFrame:
    """Positive (user, item) pairs of one training objective from the raw ``events`` table.

    Args:
        data_root: raw-table root (``<root>/events`` is hive-partitioned by ``dt``).
        objective: 'impression' (every impression, weight 1), 'click_dwell' (every click, weight
            :func:`dwell_weight` of its ``duration_s``) or 'conversion' (conversion events with an
            item id and a high-priority ``conversion_type``, weight 1; those without an item id are
            not item interactions and are skipped).
        start: first time included (a date means 00:00 UTC); None: from the first event.
        end: first time excluded; None: up to the last event.
        dwell_cap_s: click_dwell: the dwell that earns weight 1.
        dwell_min_weight: click_dwell: the weight floor.

    Returns:
        Columns :data:`INTERACTION_COLUMNS` (event_timestamp = the event's ``ts``, UTC), sorted by
        time, then user, then item.

    Raises:
        ValueError: unknown objective, or a corrupt event (null user_id or ts; an impression or click
            without item_id); the message names the column, the row and its dt partition.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: expected one of {OBJECTIVES}")
    types = OBJECTIVE_EVENTS[objective]
    filt = pc.field("event_type").isin(list(types))
    t0 = None if start is None else _utc(start)
    t1 = None if end is None else _utc(end)
    if t0 is not None:  # partition pruning on the dt string, then the exact time filter below
        filt = filt & (pc.field("dt") >= t0.date().isoformat())
    if t1 is not None:
        filt = filt & (pc.field("dt") <= t1.date().isoformat())
    cols = ["user_id", "ts", "event_type", "advertiser_id", "item_id", "conversion_type", "duration_s", "dt"]
    ev = RawLayout(Path(data_root)).read("events", cols, filt).to_pandas()
    need = ["user_id", "ts"] + (["item_id"] if objective != "conversion" else [])
    for col in need:
        bad = ev[col].isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            r = {k: (None if is_null(v) else v) for k, v in ev.iloc[i].items()}
            user = None if r["user_id"] is None else int(r["user_id"])
            when = None if r["ts"] is None else pd.Timestamp(r["ts"]).isoformat()
            raise ValueError(
                f"table 'events', column {col!r}, row {i} of the {objective} events read "
                f"(dt={r['dt']}, event_type={r['event_type']!r}, user_id={user}, ts={when}): "
                f"null {col} in a {r['event_type']!r} event"
            )
    ts = pd.to_datetime(ev["ts"], utc=True)
    keep = np.ones(len(ev), dtype=bool)
    if t0 is not None:
        keep &= (ts >= t0).to_numpy()
    if t1 is not None:
        keep &= (ts < t1).to_numpy()
    if objective == "conversion":
        keep &= ev["item_id"].notna().to_numpy() & ev["conversion_type"].isin(HIGH_PRIORITY_TYPES).to_numpy()
        weight = np.ones(len(ev))
    elif objective == "click_dwell":
        weight = dwell_weight(ev["duration_s"].to_numpy(), dwell_cap_s, dwell_min_weight)
    else:
        weight = np.ones(len(ev))
    out = pd.DataFrame(
        {
            "user_id": ev["user_id"].astype("int64"),
            "item_id": ev["item_id"].astype("Int64"),
            "advertiser_id": ev["advertiser_id"].astype("Int64"),
            "event_timestamp": ts.astype("datetime64[us, UTC]"),
            "weight": weight.astype("float64"),
        }
    )[keep]
    out["item_id"] = out["item_id"].astype("int64")
    return out.sort_values(["event_timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------- user features


def first_behavior_snapshot(cfg: StoreConfig) -> pd.Timestamp | None:
    """Earliest ``event_timestamp`` of the store's offline ``user_behavior`` table (None if empty)."""
    path = store.offline_dir(cfg, "user_behavior")
    if not path.exists() or not any(path.glob("*.parquet")):
        return None
    col = pads.dataset(path, format="parquet").to_table(columns=["event_timestamp"]).column(0)
    if len(col) == 0:
        return None
    return pd.Timestamp(pc.min(col).as_py()).tz_convert("UTC")


def user_features(cfg: StoreConfig, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time user features (:data:`USER_FEATURE_REFS`) at each row's ``event_timestamp``.

    Args:
        cfg: the Feast store.
        entity_df: ``user_id`` and ``event_timestamp`` (UTC; naive = UTC); other columns are kept.

    Returns:
        ``entity_df``'s columns followed by :data:`USER_FEATURE_COLUMNS`, same rows in the same order
        (users without a snapshot in force get nulls).
    """
    missing = {"user_id", "event_timestamp"} - set(entity_df.columns)
    if missing:
        raise ValueError(f"entity_df lacks columns {sorted(missing)}")
    return store.historical_features(cfg, entity_df, list(USER_FEATURE_REFS))


def online_user_features(cfg: StoreConfig, user_ids: Sequence[int]) -> pd.DataFrame:
    """Online user features of ``user_ids`` (in order) with the columns of :func:`user_features`.

    Returns:
        ``user_id`` followed by :data:`USER_FEATURE_COLUMNS` (unknown users get nulls).

    Raises:
        StoreUnavailable: the online store cannot be reached.
    """
    cols = ["user_id", *USER_FEATURE_COLUMNS]
    if len(user_ids) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    rows = store.lookup(cfg, [int(u) for u in user_ids], list(USER_FEATURE_REFS))
    return pd.DataFrame(rows)[cols]
