"""A tiny semantic-ID world shared by the SID and continued-pre-training tests: raw tables built to collide,
a hashing embedder, a small RQ-VAE config and compile-layout examples folders."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from adprior.contracts import EXAMPLE_SCHEMA
from llm_predictor.sid.build import SIDConfig
from tests.conftest import ts, write_raw

X1, X2 = date(2026, 6, 10), date(2026, 6, 17)
POOL = ["Nike", "Adidas", "Sephora"]

# A catalogue built to collide: items 5-7 have the same title, category and brand (identical text, so identical
# embeddings and identical codes whatever the RQ-VAE learns).
ADVERTISERS = [
    {
        "advertiser_id": 1,
        "name": "Nike",
        "aliases": [],
        "domain": "nike.com",
        "brand_group": "Nike",
        "category": "Apparel > Athletic",
        "is_active": True,
    },
    {
        "advertiser_id": 2,
        "name": "Sephora",
        "aliases": [],
        "domain": "sephora.com",
        "brand_group": "Sephora",
        "category": "Beauty > Makeup",
        "is_active": True,
    },
    {
        "advertiser_id": 3,
        "name": "IKEA",
        "aliases": [],
        "domain": "ikea.com",
        "brand_group": "IKEA",
        "category": "Home > Furniture",
        "is_active": True,
    },
]
ITEMS = [
    {
        "item_id": 1,
        "advertiser_id": 1,
        "title": "Nike running shoes",
        "category": "Apparel > Athletic",
        "price": 90.0,
    },
    {
        "item_id": 2,
        "advertiser_id": 1,
        "title": "Nike track jacket",
        "category": "Apparel > Athletic",
        "price": 60.0,
    },
    {
        "item_id": 3,
        "advertiser_id": 2,
        "title": "Sephora matte lipstick",
        "category": "Beauty > Makeup",
        "price": 20.0,
    },
    {
        "item_id": 4,
        "advertiser_id": 2,
        "title": "Sephora eye palette",
        "category": "Beauty > Makeup",
        "price": 35.0,
    },
    {
        "item_id": 5,
        "advertiser_id": 3,
        "title": "IKEA oak bookshelf",
        "category": "Home > Furniture",
        "price": 80.0,
    },
    {
        "item_id": 6,
        "advertiser_id": 3,
        "title": "IKEA oak bookshelf",
        "category": "Home > Furniture",
        "price": 85.0,
    },
    {
        "item_id": 7,
        "advertiser_id": 3,
        "title": "IKEA oak bookshelf",
        "category": "Home > Furniture",
        "price": 99.0,
    },
    {
        "item_id": 8,
        "advertiser_id": 3,
        "title": "IKEA desk lamp",
        "category": "Home > Lighting",
        "price": 15.0,
    },
]


def hash_embed(texts: list[str]) -> np.ndarray:
    """A tiny deterministic text embedder for tests: hashed word and character n-grams, L2-normalised."""
    from sklearn.feature_extraction.text import HashingVectorizer

    vec = HashingVectorizer(
        n_features=64, analyzer="char_wb", ngram_range=(2, 3), norm="l2", alternate_sign=False
    )
    return vec.transform(texts).toarray().astype(np.float32)


def conv(user: int, when: str, item: int, event_type: str = "attributed_conversion") -> dict:
    adv = next(i["advertiser_id"] for i in ITEMS if i["item_id"] == item) if item <= len(ITEMS) else 1
    return {
        "user_id": user,
        "ts": ts(when),
        "event_type": event_type,
        "text": f"item {item}",
        "advertiser_id": adv,
        "item_id": item,
        "category": None,
        "brand": None,
        "conversion_type": "purchase",
        "value": 1.0,
    }


# User 1's events around the anchors (X1 = 06-10, X2 = 06-17). Features use ts < x + 1 day.
EVENTS = [
    conv(1, "2026-06-01 10:00:00", 1),
    conv(1, "2026-06-03 10:00:00", 3, "matched_conversion"),
    conv(1, "2026-06-05 10:00:00", 1),  # item 1 again: newer, moves it ahead of item 3
    conv(1, "2026-06-07 10:00:00", 99),  # item without a SID: dropped
    {**conv(1, "2026-06-08 10:00:00", 4), "event_type": "click", "conversion_type": None},  # not a conversion
    conv(1, "2026-06-10 23:59:59", 5, "ad_conversion"),  # last second of the anchor day: included for X1
    conv(1, "2026-06-11 00:00:00", 8),  # first second after X1's cut-off: only for X2
    conv(1, "2026-06-20 00:00:00", 2),  # after both anchors
    conv(3, "2026-06-09 00:00:00", 6, "view_conversion"),
]


def example_row(user: int, split: str = "train", label: str | None = None) -> dict:
    row = {name: None for name in EXAMPLE_SCHEMA.names}
    for f in EXAMPLE_SCHEMA:
        if pa.types.is_list(f.type):
            row[f.name] = []
    row.update(
        user_id=user,
        split=split,
        in_v0=False,
        label_advertiser_name=label,
        label_advertiser_id=None if label is None else 1,
        gender="female",
        age=30,
        user_state="core",
        country="US",
        active_advertisers=["Nike"],
        active_advertiser_ids=[1],
        onsite_searches=["running shoes"],
        n_attributed=1,
        n_matched=0,
    )
    return row


def write_examples(root: Path, rows_by_date: dict[date, list[dict]]) -> Path:
    """A compile-layout examples folder (examples/anchor_date=..., preset_pool/anchor_date=...)."""
    schema = pa.schema([f for f in EXAMPLE_SCHEMA if f.name != "anchor_date"])
    for x, rows in rows_by_date.items():
        part = root / "examples" / f"anchor_date={x.isoformat()}"
        part.mkdir(parents=True)
        body = [{k: v for k, v in r.items() if k != "anchor_date"} for r in rows]
        pq.write_table(pa.Table.from_pylist(body, schema=schema), part / "part-00000.parquet")
        pool = root / "preset_pool" / f"anchor_date={x.isoformat()}"
        pool.mkdir(parents=True)
        pq.write_table(
            pa.table(
                {
                    "rank": pa.array(range(1, len(POOL) + 1), pa.int32()),
                    "advertiser_id": pa.array(range(len(POOL)), pa.int64()),
                    "name": POOL,
                    "revenue": [3.0, 2.0, 1.0],
                }
            ),
            pool / "part-00000.parquet",
        )
    return root


def make_raw(root: Path) -> Path:
    return write_raw(root, {"advertisers": ADVERTISERS, "items": ITEMS, "events": EVENTS})


def tiny_sid_config(data: Path, out: Path, **kw) -> SIDConfig:
    base = {
        "levels": 2,
        "codebook_size": 4,
        "latent_dim": 8,
        "hidden_dims": (16,),
        "epochs": 20,
        "batch_size": 4,
        "threads": 1,
    }
    return SIDConfig(data=data, out=out, **{**base, **kw})
