"""Real-data adapter: Amazon ``Scientific`` reviews -> the raw tables (design.md "Raw tables").

The data (``../shared/data/amazon-scientific``) has per-user review sequences in chronological order
but no timestamps. This adapter treats a brand as an advertiser and a review as an
``attributed_conversion`` (conversion_type ``purchase``), and synthesises dates that keep each
user's order exactly: the LAST item of every user lands in the label window (anchor, anchor+7d];
earlier items step backwards from anchor-1 day by random gaps of whole days. The output is the same
set of parquet tables the simulator writes, so the example compiler reads it unchanged.

Items whose brand is masked (empty, "Generic", "Unknown", ...) have no advertiser: their reviews
stay in ``events`` (advertiser_id null, a text signal) but can never be a label, and they are left
out of the ``items`` table, whose contract requires an advertiser_id (items are the ads retrieval
serves).

The JSON files are read and their text normalised by :mod:`world.amazon_source`.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from world.amazon_source import brand_key, category_path, clean_text, read_inter, read_items
from world.schema import PARTITIONED, RawLayout, conform, validate_table

DAY_S = 86_400
DAILY_LOOKBACK_DAYS = 180  # advertiser_daily starts at anchor - this many days (events may be older)
LABEL_WINDOW_DAYS = 7  # the last item of each user lands in (anchor, anchor + this]


@dataclass
class AmazonConfig:
    """Where the amazon-scientific files are, where the tables go, and how dates and revenue are made."""

    inter_path: Path  # Scientific.inter.json: {user_index: [item_index, ...]}, oldest first
    items_path: Path  # Scientific.item.json: {item_index: {title, description, brand, categories}}
    out: Path  # data root; the tables are written to out/<table>/ (existing table folders are replaced)
    anchor_date: dt.date = dt.date(2026, 6, 30)  # last item of each user falls in (anchor, anchor+7d]
    max_gap_days: int = 12  # days between consecutive reviews of a user, drawn uniformly in 1..this
    seed: int = 0  # RNG seed: same seed and inputs -> identical tables
    preset_spend: float = 100.0  # daily spend of every advertiser in advertiser_daily
    # advertiser_daily.revenue of day d = the advertiser's conversions in (d - this many days, d]. The data
    # has no revenue; one day's conversions are almost all zero on a dataset this sparse, which made the
    # preset pool (top revenue on the anchor day) an alphabetical list. A trailing count is a popularity proxy.
    revenue_window_days: int = 365
    # brands that mean "no advertiser" (compared case-insensitively after unescaping and stripping)
    masked_brands: tuple[str, ...] = ("", "generic", "unknown", "n/a", "none", "na")


# --------------------------------------------------------------------------------------------
# advertiser_daily revenue


def ev_adv_ids(ev_keys: list[str | None], adv_id: dict[str, int]) -> np.ndarray:
    """Advertiser id of each event, -1 where the brand is masked (no advertiser)."""
    return np.array([-1 if k is None else adv_id[k] for k in ev_keys], dtype=np.int64)


def trailing_conversions(
    ev_days: np.ndarray, ev_adv: np.ndarray, n_adv: int, first_day: int, last_day: int, window: int
) -> np.ndarray:
    """(days x advertisers) matrix: row d - first_day counts each advertiser's events on days (d - window, d],
    for d in [first_day, last_day]; events with ev_adv < 0 are ignored."""
    if window < 1:
        raise ValueError(f"revenue_window_days must be >= 1, got {window}")
    lo = first_day - window + 1
    n = last_day - lo + 1
    daily = np.zeros((n, n_adv), dtype=np.float64)
    sel = (ev_adv >= 0) & (ev_days >= lo) & (ev_days <= last_day)
    np.add.at(daily, (ev_days[sel] - lo, ev_adv[sel]), 1.0)
    cum = np.vstack([np.zeros((1, n_adv)), np.cumsum(daily, axis=0)])  # cum[i] = sum of daily[:i]
    rows = np.arange(window - 1, n)  # the rows of first_day .. last_day
    return cum[rows + 1] - cum[rows + 1 - window]


# --------------------------------------------------------------------------------------------
# synthetic dates


def user_timestamps(user_id: int, n: int, config: AmazonConfig) -> np.ndarray:
    """Seconds since the epoch (int64, UTC) of a user's ``n`` reviews, strictly increasing.

    The last review is at a random second of day anchor + k (k uniform in 1..7); review i < n-1 is
    on day anchor - (g_{n-2} + ... + g_i) with every gap g uniform in 1..max_gap_days, at a random
    second of that day. Seeded by (seed, user_id), so a user's dates do not depend on other users.
    """
    rng = np.random.default_rng([config.seed, user_id])
    anchor_day = (config.anchor_date - dt.date(1970, 1, 1)).days
    k = int(rng.integers(1, LABEL_WINDOW_DAYS + 1))
    gaps = rng.integers(1, config.max_gap_days + 1, size=n - 1)
    secs = rng.integers(0, DAY_S, size=n)
    days = np.empty(n, dtype=np.int64)
    days[-1] = anchor_day + k
    if n > 1:
        # days[n-2] = anchor - gaps[0], days[n-3] = anchor - gaps[0] - gaps[1], ...
        days[:-1] = (anchor_day - np.cumsum(gaps))[::-1]
    ts = days * DAY_S + secs
    # Gaps are >= 1 day so ts is already strictly increasing; keep the guarantee explicit anyway.
    for i in range(n - 2, -1, -1):
        if ts[i] >= ts[i + 1]:
            ts[i] = ts[i + 1] - 1
    return ts


# --------------------------------------------------------------------------------------------
# writing


def _write_flat(table: pa.Table, name: str, layout: RawLayout) -> None:
    validate_table(table, name)
    folder = layout.table(name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    pq.write_table(conform(table, name), folder / "part-0.parquet")


def _write_partitioned(table: pa.Table, days: np.ndarray, name: str, layout: RawLayout) -> None:
    """Write ``table`` under layout/<name>/dt=YYYY-MM-DD/part-0.parquet, one folder per distinct day.

    ``days`` are days since the epoch, one per row; dt lives only in the folder name.
    """
    assert name in PARTITIONED
    validate_table(table, name)
    folder = layout.table(name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    order = np.argsort(days, kind="stable")
    table = conform(table, name).take(pa.array(order))
    if "dt" in table.column_names:
        table = table.drop(["dt"])
    days = days[order]
    bounds = np.flatnonzero(np.diff(days)) + 1
    starts = np.concatenate([[0], bounds])
    ends = np.concatenate([bounds, [len(days)]])
    epoch = dt.date(1970, 1, 1)
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        day = epoch + dt.timedelta(days=int(days[s]))
        part = folder / f"dt={day.isoformat()}"
        part.mkdir()
        pq.write_table(table.slice(s, e - s), part / "part-0.parquet")


# --------------------------------------------------------------------------------------------
# the import


def import_amazon(config: AmazonConfig) -> dict[str, Any]:
    """Map amazon-scientific to the raw tables under ``config.out``; return a summary dict."""
    if config.max_gap_days < 1:
        raise ValueError(f"max_gap_days must be >= 1, got {config.max_gap_days}")
    inter_path, items_path = Path(config.inter_path), Path(config.items_path)
    items = read_items(items_path)
    seqs = read_inter(inter_path, items, items_path)
    if not seqs:
        raise ValueError(f"{inter_path}: no users")
    masked = {brand_key(b) for b in config.masked_brands}

    # ---- brands -> advertisers
    item_key: dict[int, str | None] = {}
    for item, rec in items.items():
        key = brand_key(rec["brand"])
        item_key[item] = None if key in masked else key
    events_per_key: Counter[str] = Counter()
    variant_events: Counter[tuple[str, str]] = Counter()  # (key, cleaned variant) -> reviews
    for seq in seqs.values():
        for item in seq:
            key = item_key[item]
            if key is not None:
                events_per_key[key] += 1
                variant_events[key, clean_text(items[item]["brand"])] += 1
    raw_variants: dict[str, set[str]] = defaultdict(set)
    variant_items: Counter[tuple[str, str]] = Counter()
    top2: dict[str, Counter[str]] = defaultdict(Counter)
    for item, rec in items.items():
        key = item_key[item]
        if key is None:
            continue
        raw_variants[key].add(rec["brand"])
        variant_items[key, clean_text(rec["brand"])] += 1
        path = category_path(rec["categories"])
        if path is not None:
            top2[key][" > ".join(path.split(" > ")[:2])] += 1
    keys = sorted(raw_variants)
    adv_id = {key: i for i, key in enumerate(keys)}
    adv_name: dict[str, str] = {}
    adv_rows: dict[str, list[Any]] = defaultdict(list)
    for key in keys:
        variants = {clean_text(r) for r in raw_variants[key]}
        # Display name: the spelling with most reviews, then most items, then alphabetical.
        name = min(variants, key=lambda v: (-variant_events[key, v], -variant_items[key, v], v))
        adv_name[key] = name
        aliases = sorted({r.strip() for r in raw_variants[key]} - {name})
        cats = top2[key]
        category = min(cats, key=lambda c: (-cats[c], c)) if cats else ""
        adv_rows["advertiser_id"].append(adv_id[key])
        adv_rows["name"].append(name)
        adv_rows["aliases"].append(aliases)
        adv_rows["domain"].append("")
        adv_rows["brand_group"].append(name)
        adv_rows["category"].append(category)
        adv_rows["is_active"].append(True)

    # ---- items (only those with an advertiser: the contract requires advertiser_id)
    item_rows: dict[str, list[Any]] = defaultdict(list)
    item_cat = {item: category_path(rec["categories"]) for item, rec in items.items()}
    item_title = {item: clean_text(rec["title"]) for item, rec in items.items()}
    for item in sorted(items):
        key = item_key[item]
        if key is None:
            continue
        item_rows["item_id"].append(item)
        item_rows["advertiser_id"].append(adv_id[key])
        item_rows["title"].append(item_title[item])
        item_rows["category"].append(item_cat[item])
        item_rows["price"].append(None)
    n_masked_items = sum(1 for k in item_key.values() if k is None)

    # ---- events with synthetic timestamps
    user_col: list[int] = []
    item_col: list[int] = []
    ts_parts: list[np.ndarray] = []
    user_rows: dict[str, list[Any]] = defaultdict(list)
    last_unmasked = 0
    for user, seq in seqs.items():
        ts = user_timestamps(user, len(seq), config)
        ts_parts.append(ts)
        user_col.extend([user] * len(seq))
        item_col.extend(seq)
        user_rows["user_id"].append(user)
        user_rows["signup_date"].append(int(ts[0] // DAY_S))
        last_unmasked += item_key[seq[-1]] is not None
    ts_s = np.concatenate(ts_parts)
    ev_keys = [item_key[i] for i in item_col]
    events = pa.table(
        {
            "user_id": pa.array(user_col, pa.int64()),
            "ts": pa.array(ts_s * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "event_type": pa.array(["attributed_conversion"] * len(item_col), pa.string()),
            "text": pa.array([item_title[i] for i in item_col], pa.string()),
            "advertiser_id": pa.array([None if k is None else adv_id[k] for k in ev_keys], pa.int64()),
            "item_id": pa.array(item_col, pa.int64()),
            "category": pa.array([item_cat[i] for i in item_col], pa.string()),
            "brand": pa.array([None if k is None else adv_name[k] for k in ev_keys], pa.string()),
            "conversion_type": pa.array(["purchase"] * len(item_col), pa.string()),
        }
    )
    ev_days = ts_s // DAY_S

    users = pa.table(
        {
            "user_id": pa.array(user_rows["user_id"], pa.int64()),
            "age": pa.nulls(len(seqs), pa.int32()),
            "gender": pa.array(["unknown"] * len(seqs), pa.string()),
            "user_state": pa.array(["unknown"] * len(seqs), pa.string()),
            "country": pa.array(["US"] * len(seqs), pa.string()),
            "signup_date": pa.array(user_rows["signup_date"], pa.int32()).cast(pa.date32()),
        }
    )
    advertisers = pa.table(
        {
            "advertiser_id": pa.array(adv_rows["advertiser_id"], pa.int64()),
            "name": pa.array(adv_rows["name"], pa.string()),
            "aliases": pa.array(adv_rows["aliases"], pa.list_(pa.string())),
            "domain": pa.array(adv_rows["domain"], pa.string()),
            "brand_group": pa.array(adv_rows["brand_group"], pa.string()),
            "category": pa.array(adv_rows["category"], pa.string()),
            "is_active": pa.array(adv_rows["is_active"], pa.bool_()),
        }
    )
    items_t = pa.table(
        {
            "item_id": pa.array(item_rows["item_id"], pa.int64()),
            "advertiser_id": pa.array(item_rows["advertiser_id"], pa.int64()),
            "title": pa.array(item_rows["title"], pa.string()),
            "category": pa.array(item_rows["category"], pa.string()),
            "price": pa.array(item_rows["price"], pa.float64()),
        }
    )

    # ---- advertiser_daily: every advertiser x every day of [max(first event, anchor-180), anchor+7]
    anchor_day = (config.anchor_date - dt.date(1970, 1, 1)).days
    first_day = max(int(ev_days.min()), anchor_day - DAILY_LOOKBACK_DAYS)
    last_day = anchor_day + LABEL_WINDOW_DAYS
    n_days, n_adv = last_day - first_day + 1, len(keys)
    ev_adv = ev_adv_ids(ev_keys, adv_id)
    revenue = trailing_conversions(ev_days, ev_adv, n_adv, first_day, last_day, config.revenue_window_days)
    daily_days = np.repeat(np.arange(first_day, last_day + 1, dtype=np.int64), n_adv)
    daily = pa.table(
        {
            "dt": pa.array(daily_days.astype(np.int32), pa.int32()).cast(pa.date32()),
            "advertiser_id": pa.array(np.tile(np.arange(n_adv, dtype=np.int64), n_days), pa.int64()),
            "spend": pa.array(np.full(n_days * n_adv, float(config.preset_spend)), pa.float64()),
            "revenue": pa.array(revenue.reshape(-1), pa.float64()),
            "bid_type": pa.array(["OCPM"] * (n_days * n_adv), pa.string()),
        }
    )

    # ---- write (each table is validated against the contract first)
    layout = RawLayout(Path(config.out))
    layout.root.mkdir(parents=True, exist_ok=True)
    _write_flat(users, "users", layout)
    _write_flat(advertisers, "advertisers", layout)
    _write_flat(items_t, "items", layout)
    _write_partitioned(daily, daily_days, "advertiser_daily", layout)
    _write_partitioned(events, ev_days, "events", layout)

    epoch = dt.date(1970, 1, 1)

    def iso(day: int) -> str:
        return (epoch + dt.timedelta(days=int(day))).isoformat()

    return {
        "users": len(seqs),
        "advertisers": n_adv,
        "items": len(items_t),
        "masked_items": n_masked_items,
        "events": len(events),
        "masked_events": int((ev_adv < 0).sum()),
        "first_event_date": iso(ev_days.min()),
        "last_event_date": iso(ev_days.max()),
        "daily_first_date": iso(first_day),
        "daily_last_date": iso(last_day),
        "daily_rows": n_days * n_adv,
        "last_item_unmasked_frac": last_unmasked / len(seqs),
    }
