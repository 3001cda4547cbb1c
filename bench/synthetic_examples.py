"""Synthetic labelled training rows for the training benchmark (bench/train.py).

``n`` rows with the columns of the compiled examples table (profile, active advertisers, conversions,
searches, URLs, top categories and brands) built from real retail brand names, and a 60-name preset
pool, so prompt lengths are realistic without a compiled examples folder. Seeded: the same seed gives
the same rows.
"""

from __future__ import annotations

import random
from datetime import date
from typing import Any

BRANDS = [
    "Nike",
    "Adidas",
    "Sephora",
    "Ulta Beauty",
    "IKEA",
    "Target",
    "Walmart",
    "Best Buy",
    "Apple",
    "Samsung",
    "Home Depot",
    "Lowe's",
    "Wayfair",
    "Etsy",
    "Chewy",
    "Petco",
    "REI",
    "Patagonia",
    "The North Face",
    "Lululemon",
    "Gap",
    "Old Navy",
    "H&M",
    "Zara",
    "Uniqlo",
    "Nordstrom",
    "Macy's",
    "Kohl's",
    "Costco",
    "Kroger",
    "Whole Foods",
    "Starbucks",
    "Dunkin'",
    "Nespresso",
    "KitchenAid",
    "Williams Sonoma",
    "Crate & Barrel",
    "Pottery Barn",
    "West Elm",
    "Bed Bath & Beyond",
    "Dyson",
    "Shark",
    "iRobot",
    "Bose",
    "Sony",
    "LG",
    "Dell",
    "HP",
    "Lenovo",
    "Microsoft",
    "Nintendo",
    "PlayStation",
    "Xbox",
    "GameStop",
    "Lego",
    "Hasbro",
    "Mattel",
    "Fabletics",
    "Glossier",
    "Fenty Beauty",
]
CATEGORIES = [
    "Apparel > Shoes > Running",
    "Beauty > Makeup > Lips",
    "Home > Furniture > Sofas",
    "Electronics > Audio",
    "Pets > Dog Food",
    "Outdoor > Camping > Tents",
    "Kitchen > Coffee",
    "Toys > Building Sets",
]
QUERIES = [
    "trail running shoes",
    "waterproof hiking boots",
    "matte lipstick",
    "sectional sofa small space",
    "noise cancelling headphones",
    "grain free dog food",
    "2 person tent",
    "espresso machine",
    "lego star wars",
    "yoga leggings high waist",
    "robot vacuum pet hair",
    "gaming laptop under 1000",
]


def _host(brand: str) -> str:
    """A brand as a host name: lower-case letters and digits only ('Crate & Barrel' -> 'cratebarrel')."""
    return "".join(c for c in brand.lower() if c.isalnum())


def synthetic_examples(n: int = 16, seed: int = 0) -> tuple[Any, dict[str, list[str]]]:
    """``n`` labelled train rows with the examples-table columns and a 60-name preset pool."""
    import pandas as pd

    rng = random.Random(seed)
    x = date(2026, 6, 22)
    pool = BRANDS[:60]
    rows = []
    for i in range(n):
        active = rng.sample(BRANDS, rng.randint(0, 6))
        label = rng.choice(active) if active and rng.random() < 0.4 else rng.choice(pool)
        brands = rng.sample(BRANDS, 8)
        rows.append(
            {
                "user_id": 1000 + i,
                "anchor_date": x,
                "split": "train",
                "in_v0": rng.random() < 0.5,
                "label_advertiser_id": BRANDS.index(label) + 1,
                "label_advertiser_name": label,
                "gender": rng.choice(["female", "male", "unknown"]),
                "age": rng.randint(18, 70),
                "user_state": rng.choice(["new", "casual", "core", "resurrected"]),
                "country": "US",
                "active_advertisers": active,
                "attributed_conversions": [f"{b} {rng.choice(QUERIES)}" for b in rng.sample(brands, 5)],
                "matched_conversions": [
                    f"{b} order #{rng.randint(1000, 9999)}" for b in rng.sample(brands, 4)
                ],
                "onsite_searches": rng.sample(QUERIES, 6),
                "offsite_searches": [f"best {q} 2026" for q in rng.sample(QUERIES, 5)],
                "offsite_urls": [
                    f"https://www.{_host(b)}.com/p/{rng.randint(10**5, 10**6)}" for b in rng.sample(brands, 5)
                ],
                "top_categories": rng.sample(CATEGORIES, 4),
                "top_brands": brands[:6],
            }
        )
    return pd.DataFrame(rows), {x.isoformat(): pool}
