"""Vocabularies and encoding of the two towers' inputs (the frames of :mod:`retrieval.data`).

- Tokens: :func:`category_tokens` (a category path as its lower-cased path prefixes, the same for
  raw items and compiled ``top_categories``), :func:`brand_token`, :func:`age_bucket`.
- :class:`Vocab` / :class:`Vocabs`: stable token -> index maps (0 = unknown / padding) saved as JSON.
- :func:`encode_users` / :func:`encode_items`, which turn frames into padded index arrays.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from retrieval.data import USER_FEATURE_COLUMNS, as_list, is_null
from world.schema import category_levels

AGE_EDGES: tuple[int, ...] = (18, 25, 35, 45, 55, 65)  # age buckets: <18, 18-24, ..., 55-64, 65+


# -------------------------------------------------------------------------------------------- tokens


def category_tokens(path: Any) -> list[str]:
    """Tokens of a category path: each level as its lower-cased path prefix.

    ``'Apparel > Athletic'`` (raw items) and ``'Apparel / Athletic'`` (compiled ``top_categories``)
    both give ``['apparel', 'apparel>athletic']``, so a level's token is the same in both towers and
    'General' under two parents stays two tokens.
    """
    if is_null(path):
        return []
    levels = [x.lower() for x in category_levels(str(path))]
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
        """Vocabularies from the catalogue (:func:`retrieval.data.item_features`) and training user features.

        Args:
            items: the catalogue.
            users: the training rows' user features (:data:`retrieval.data.USER_FEATURE_COLUMNS`).
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
    """Index arrays of the user tower from a frame with :data:`retrieval.data.USER_FEATURE_COLUMNS` (offline or online).

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
    """Index arrays of the item tower from catalogue rows (:data:`retrieval.data.ITEM_COLUMNS`).

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
