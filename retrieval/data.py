"""Training data of the two-tower retrieval model: catalogue, positives, user features, vocabularies.

- :func:`item_features`: the catalogue (raw ``items`` joined with ``advertisers``), one row per item.
- :func:`interactions`: positive (user, item) pairs of one objective from the raw ``events`` table:
  impressions (weight 1), clicks weighted by dwell time (:func:`dwell_weight`), or high-priority
  conversions that carry an item id (weight 1).
- :func:`user_features` (Feast point-in-time join at each row's time, for training) and
  :func:`online_user_features` (Feast online store, for serving) return the same columns
  (:data:`USER_FEATURE_COLUMNS`), so the model encodes both with one code path.
- :class:`Vocab` / :class:`Vocabs`: stable token -> index maps (0 = unknown / padding) saved as JSON,
  and :func:`encode_users` / :func:`encode_items`, which turn frames into padded index arrays.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
AGE_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55, 65)  # age buckets: <18, 18-24, ..., 55-64, 65+
_LEVEL_SPLIT = re.compile(r"\s*[>/]\s*")  # raw paths use '>', compiled top_categories use ' / '


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


def category_tokens(path: Any) -> list[str]:
    """Tokens of a category path: each level as its lower-cased path prefix.

    ``'Apparel > Athletic'`` (raw items) and ``'Apparel / Athletic'`` (compiled ``top_categories``)
    both give ``['apparel', 'apparel>athletic']``, so a level's token is the same in both towers and
    'General' under two parents stays two tokens.
    """
    if is_null(path):
        return []
    levels = [x.lower() for x in _LEVEL_SPLIT.split(str(path).strip()) if x]
    return [">".join(levels[: i + 1]) for i in range(len(levels))]


def brand_token(name: Any) -> str | None:
    """A brand string (advertiser name, brand group, a user's top brand) as its vocabulary token."""
    return None if is_null(name) or not str(name).strip() else str(name).strip().lower()


def age_bucket(age: Any) -> str | None:
    """'<18', '18-24', ..., '55-64', '65+' (None for a missing age)."""
    if is_null(age):
        return None
    a = float(age)
    if a < AGE_EDGES[0]:
        return f"<{AGE_EDGES[0]}"
    for lo, hi in itertools.pairwise(AGE_EDGES):
        if a < hi:
            return f"{lo}-{hi - 1}"
    return f"{AGE_EDGES[-1]}+"


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


# --------------------------------------------------------------------------------------- vocabularies


def _token(v: Any) -> str:
    """Vocabulary key of a value: integral numbers as their int, everything else as str."""
    if isinstance(v, bool | np.bool_):
        return str(v)
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _sort_key(t: str) -> tuple[int, int, str]:
    return (0, int(t), "") if re.fullmatch(r"-?\d+", t) else (1, 0, t)


@dataclass
class Vocab:
    """A stable token -> index map: index ``i + 1`` is ``tokens[i]``; 0 = unknown / padding."""

    tokens: list[str] = field(default_factory=list)  # known tokens; integers sort numerically, then strings

    def __post_init__(self) -> None:
        self._index = {t: i + 1 for i, t in enumerate(self.tokens)}
        if len(self._index) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")

    @classmethod
    def build(cls, values: Iterable[Any]) -> Vocab:
        """Vocabulary of the distinct non-null values, in a deterministic order."""
        return cls(sorted({_token(v) for v in values if not is_null(v)}, key=_sort_key))

    def __len__(self) -> int:
        """Table size: tokens + 1 (the unknown / padding row 0)."""
        return len(self.tokens) + 1

    def id(self, value: Any) -> int:
        """Index of ``value`` (0 when null or unknown)."""
        return 0 if is_null(value) else self._index.get(_token(value), 0)

    def ids(self, values: Iterable[Any]) -> list[int]:
        """Indices of ``values`` in order (unknown -> 0)."""
        return [self.id(v) for v in values]


@dataclass
class Vocabs:
    """Every vocabulary of the two towers plus the price bucket edges; saved as one JSON file."""

    item: Vocab  # item ids of the catalogue
    advertiser: Vocab  # advertiser ids (catalogue and users' active advertisers)
    category: Vocab  # category path-prefix tokens (category_tokens) of items and users' top categories
    brand: Vocab  # lower-cased advertiser names, brand groups and users' top brands
    gender: Vocab  # user profile
    user_state: Vocab  # user profile
    country: Vocab  # user profile
    age: Vocab  # age buckets (age_bucket)
    price_edges: list[float] = field(default_factory=list)  # interior quantile edges of catalogue prices

    @classmethod
    def build(cls, items: pd.DataFrame, users: pd.DataFrame, price_buckets: int = 8) -> Vocabs:
        """Vocabularies from the catalogue (:func:`item_features`) and training user features.

        Args:
            items: the catalogue.
            users: the training rows' user features (:data:`USER_FEATURE_COLUMNS`).
            price_buckets: number of price quantile buckets (duplicate edges collapse).
        """
        cats = [t for p in items["category"] for t in category_tokens(p)]
        cats += [t for v in users["top_categories"] for p in as_list(v) for t in category_tokens(p)]
        brands = [brand_token(b) for b in (*items["advertiser_name"], *items["brand_group"])]
        brands += [brand_token(b) for v in users["top_brands"] for b in as_list(v)]
        advs = [*items["advertiser_id"], *(a for v in users["active_advertiser_ids"] for a in as_list(v))]
        prices = items["price"].dropna().to_numpy(float)
        edges: list[float] = []
        if len(prices) and price_buckets > 1:
            qs = np.quantile(prices, np.linspace(0, 1, price_buckets + 1)[1:-1])
            edges = sorted({float(q) for q in qs})
        return cls(
            item=Vocab.build(items["item_id"]),
            advertiser=Vocab.build(advs),
            category=Vocab.build(cats),
            brand=Vocab.build(brands),
            gender=Vocab.build(users["gender"]),
            user_state=Vocab.build(users["user_state"]),
            country=Vocab.build(users["country"]),
            age=Vocab.build(age_bucket(a) for a in users["age"]),
            price_edges=edges,
        )

    def sizes(self) -> dict[str, int]:
        """Embedding table sizes (tokens + 1), and 'price' = buckets + 1."""
        out = {k: len(getattr(self, k)) for k in VOCAB_NAMES}
        out["price"] = len(self.price_edges) + 2
        return out

    def save(self, path: Path) -> None:
        """Write the vocabularies as JSON."""
        d = {k: getattr(self, k).tokens for k in VOCAB_NAMES}
        d["price_edges"] = list(self.price_edges)
        Path(path).write_text(json.dumps(d, indent=1))

    @classmethod
    def load(cls, path: Path) -> Vocabs:
        """Read vocabularies written by :meth:`save`."""
        d = json.loads(Path(path).read_text())
        return cls(
            **{k: Vocab(list(d[k])) for k in VOCAB_NAMES}, price_edges=[float(x) for x in d["price_edges"]]
        )


VOCAB_NAMES: tuple[str, ...] = (
    "item",
    "advertiser",
    "category",
    "brand",
    "gender",
    "user_state",
    "country",
    "age",
)


# ------------------------------------------------------------------------------------------ encoding


def _pad(rows: list[list[int]], width: int) -> np.ndarray:
    """Rows of indices truncated to ``width`` and right-padded with 0, as int64 [n, width]."""
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        r = r[:width]
        out[i, : len(r)] = r
    return out


def _dedup(xs: Iterable[int]) -> list[int]:
    """Known indices (non-zero), first occurrence kept, in order."""
    return [x for x in dict.fromkeys(xs) if x != 0]


def encode_users(frame: pd.DataFrame, vocabs: Vocabs, max_history: int) -> dict[str, np.ndarray]:
    """Index arrays of the user tower from a frame with :data:`USER_FEATURE_COLUMNS` (offline or online).

    Returns:
        ``gender``, ``user_state``, ``country``, ``age`` (int64 [n]); ``advertisers``, ``categories``,
        ``brands`` (int64 [n, max_history], newest / top first, 0-padded); ``dense`` (float32 [n, 3]:
        log1p(n_attributed), log1p(n_matched), 1 if the user has a behaviour snapshot).

    Raises:
        KeyError: a feature column is missing.
    """
    missing = [c for c in USER_FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"user features {missing} missing from the frame (have {sorted(frame.columns)})")
    f = frame.reset_index(drop=True)
    advs = [_dedup(vocabs.advertiser.ids(as_list(v))) for v in f["active_advertiser_ids"]]
    cats = [
        _dedup(vocabs.category.id(t) for p in as_list(v) for t in category_tokens(p))
        for v in f["top_categories"]
    ]
    brands = [_dedup(vocabs.brand.id(brand_token(b)) for b in as_list(v)) for v in f["top_brands"]]

    def count(v: Any) -> float:
        return 0.0 if is_null(v) else math.log1p(max(float(v), 0.0))

    has = [
        0.0 if is_null(a) and is_null(b) else 1.0
        for a, b in zip(f["n_attributed"], f["active_advertiser_ids"], strict=True)
    ]
    dense = np.array(
        [[count(a), count(m), h] for a, m, h in zip(f["n_attributed"], f["n_matched"], has, strict=True)],
        dtype=np.float32,
    ).reshape(len(f), 3)
    return {
        "gender": np.array(vocabs.gender.ids(f["gender"]), dtype=np.int64),
        "user_state": np.array(vocabs.user_state.ids(f["user_state"]), dtype=np.int64),
        "country": np.array(vocabs.country.ids(f["country"]), dtype=np.int64),
        "age": np.array([vocabs.age.id(age_bucket(a)) for a in f["age"]], dtype=np.int64),
        "advertisers": _pad(advs, max_history),
        "categories": _pad(cats, max_history),
        "brands": _pad(brands, max_history),
        "dense": dense,
    }


ITEM_CATEGORY_WIDTH = 6  # category tokens kept per item (path depth)
ITEM_BRAND_WIDTH = 2  # brand tokens per item: advertiser name, brand group


def encode_items(items: pd.DataFrame, vocabs: Vocabs) -> dict[str, np.ndarray]:
    """Index arrays of the item tower from catalogue rows (:data:`ITEM_COLUMNS`).

    Returns:
        ``item``, ``advertiser``, ``price`` (int64 [n]; price bucket 1.. , 0 = missing);
        ``categories`` (int64 [n, ITEM_CATEGORY_WIDTH]) and ``brands`` (int64 [n, 2]), 0-padded.
    """
    f = items.reset_index(drop=True)
    prices = pd.to_numeric(f["price"], errors="coerce").to_numpy(float)
    bucket = np.searchsorted(np.asarray(vocabs.price_edges, dtype=float), prices, side="right") + 1
    bucket = np.where(np.isnan(prices), 0, bucket).astype(np.int64)
    cats = [_dedup(vocabs.category.ids(category_tokens(p))) for p in f["category"]]
    brands = [
        _dedup(vocabs.brand.id(brand_token(b)) for b in (n, g))
        for n, g in zip(f["advertiser_name"], f["brand_group"], strict=True)
    ]
    return {
        "item": np.array(vocabs.item.ids(f["item_id"]), dtype=np.int64),
        "advertiser": np.array(vocabs.advertiser.ids(f["advertiser_id"]), dtype=np.int64),
        "price": bucket,
        "categories": _pad(cats, ITEM_CATEGORY_WIDTH),
        "brands": _pad(brands, ITEM_BRAND_WIDTH),
    }
