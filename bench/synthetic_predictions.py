"""A synthetic, schema-valid ``llm_predictions`` frame for the store benchmarks (bench/store.py).

N users, each with 20 distinct advertiser ids and names out of a pool of 300 (names of 12-30
characters), 5 free-text interests, a model version, a parse status (``partial`` when some raw
names did not resolve) and a raw completion of realistic length; seeded, so the same seed gives the
same frame.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

N_ADVERTISERS = 300
N_PREDICTED = 20
N_INTERESTS = 5
MODEL_VERSION = "smollm2-135m-instruct-sft@3f9a1c2e"

_BRAND_A = [
    "North",
    "Blue",
    "Urban",
    "Golden",
    "Silver",
    "Green",
    "Bright",
    "Pacific",
    "Summit",
    "Maple",
    "Harbor",
    "Crescent",
    "Evergreen",
    "Prairie",
    "Lumen",
    "Atlas",
    "Cedar",
    "Nova",
    "Willow",
    "Iron",
]
_BRAND_B = [
    "Outfitters",
    "Home Goods",
    "Beauty",
    "Sports",
    "Kitchen Supply",
    "Pet Care",
    "Electronics",
    "Apparel",
    "Books",
    "Travel",
    "Garden Center",
    "Footwear",
    "Toys & Games",
    "Wellness",
    "Coffee Co.",
]
_INTEREST_A = [
    "trail",
    "home",
    "budget",
    "organic",
    "vintage",
    "smart",
    "outdoor",
    "indoor",
    "family",
    "premium",
    "DIY",
    "sustainable",
    "travel-size",
    "wireless",
    "handmade",
]
_INTEREST_B = [
    "running shoes",
    "espresso machines",
    "skincare routines",
    "camping gear",
    "board games",
    "kitchen gadgets",
    "dog toys",
    "fitness trackers",
    "garden furniture",
    "winter jackets",
    "children's books",
    "noise-cancelling headphones",
    "yoga mats",
    "road trips",
    "home decor",
]


def advertiser_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct advertiser names of 12-30 characters (e.g. 'Summit Garden Center')."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = f"{rng.choice(_BRAND_A)} {rng.choice(_BRAND_B)}"
        if name in seen:
            name = f"{name} {len(names)}"
        seen.add(name)
        names.append(name)
    return names


def prediction_frame(user_ids: np.ndarray, day: date, seed: int) -> Any:
    """A schema-valid ``llm_predictions`` frame (PREDICTION_SCHEMA) for ``user_ids`` on anchor date ``day``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = len(user_ids)
    pool = advertiser_names(N_ADVERTISERS, rng)
    pool_ids = np.arange(1, N_ADVERTISERS + 1, dtype=np.int64) * 13 + 1000  # non-contiguous ids
    picks = np.empty((n, N_PREDICTED), dtype=np.int64)
    for lo in range(0, n, 5000):  # 20 distinct advertisers per user, in random (model) order
        hi = min(n, lo + 5000)
        picks[lo:hi] = np.argsort(rng.random((hi - lo, N_ADVERTISERS)), axis=1)[:, :N_PREDICTED]
    interest_a = rng.integers(0, len(_INTEREST_A), size=(n, N_INTERESTS))
    interest_b = np.argsort(rng.random((n, len(_INTEREST_B))), axis=1)[:, :N_INTERESTS]
    n_unresolved = rng.poisson(0.3, size=n).astype(np.int64)
    ids_col, names_col, raw_col, interests_col, output_col = [], [], [], [], []
    for i in range(n):
        names = [pool[j] for j in picks[i]]
        interests = [
            f"{_INTEREST_A[a]} {_INTEREST_B[b]}" for a, b in zip(interest_a[i], interest_b[i], strict=True)
        ]
        raw = [x.lower() if k % 4 == 3 else x for k, x in enumerate(names)]
        raw += [f"Unknown Brand {k}" for k in range(n_unresolved[i])]
        ids_col.append(pool_ids[picks[i]].tolist())
        names_col.append(names)
        raw_col.append(raw)
        interests_col.append(interests)
        output_col.append(
            "Advertisers:\n"
            + "\n".join(f"{k}. {x}" for k, x in enumerate(raw, 1))
            + "\nInterests: "
            + "; ".join(interests)
        )
    event_ts = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return pd.DataFrame(
        {
            "user_id": user_ids.astype(np.int64),
            "event_timestamp": pd.Series([event_ts] * n, dtype="datetime64[us, UTC]"),
            "created_timestamp": pd.Series([datetime.now(UTC)] * n, dtype="datetime64[us, UTC]"),
            "anchor_date": [day] * n,
            "advertiser_ids": ids_col,
            "advertiser_names": names_col,
            "raw_names": raw_col,
            "interests": interests_col,
            "model_version": MODEL_VERSION,
            "engine": "transformers",
            "status": np.where(n_unresolved > 0, "partial", "ok"),
            "n_unresolved": n_unresolved,
            "raw_output": output_col,
        }
    )
