"""The advertiser side of the simulated world: advertisers, their items and their daily spend.

Small and global (the same for every user chunk), generated from the world's seed alone:

* :func:`build_catalog`: the curated real brands of :mod:`world.catalog` (heaviest first), then a
  long tail of generated names (15 % join an earlier long-tail advertiser's brand group), each with
  a few items (title, category, log-normal price); a :class:`Catalog` of arrays for fast per-user
  sampling and the ``advertisers`` / ``items`` raw tables.
* :func:`advertiser_daily`: daily spend and revenue per advertiser (revenue follows popularity).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from world.catalog import ADJECTIVES, BRANDS, LONG_TAIL_FIRST, LONG_TAIL_SECOND, PRODUCTS
from world.schema import conform

if TYPE_CHECKING:
    from world.config import WorldConfig


def phrase(adjective: str, noun: str) -> str:
    """'organic' + 'organic snacks' -> 'organic snacks', not 'organic organic snacks'."""
    return noun if adjective in noun.split() else f"{adjective} {noun}"


def slug(text: str) -> str:
    """Lower-case words joined by '-' (URL paths and domains): 'Blue Bottle Co.' -> 'blue-bottle-co'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class Catalog:
    """Advertisers and items of one world, with arrays for fast per-user sampling."""

    adv: dict[str, np.ndarray]  # column arrays: id, popularity, category index, group index
    names: list[str]  # display name per advertiser
    domains: list[str]  # web domain per advertiser
    categories: list[str]  # category path per advertiser
    groups: list[str]  # brand group per advertiser
    active: np.ndarray  # bool per advertiser
    cat_names: list[str]  # distinct leaf categories
    by_cat: dict[int, np.ndarray]  # category index -> advertiser indices
    siblings: dict[int, np.ndarray]  # advertiser index -> brand-group siblings
    items_of: list[np.ndarray]  # advertiser index -> item ids
    item_title: dict[int, str]  # item id -> title ('<brand> <adjective> <noun>')
    item_price: dict[int, float]  # item id -> price
    item_noun: dict[int, str]  # item id -> product noun of its title
    pop: np.ndarray  # normalised popularity


def build_catalog(cfg: WorldConfig) -> tuple[Catalog, dict[str, pa.Table]]:
    """The world's advertisers (curated brands by weight, then a generated long tail) and their items.

    Returns:
        The :class:`Catalog` and the conformed ``advertisers`` and ``items`` tables.
    """
    rng = np.random.default_rng([cfg.seed, 10**9 + 7])
    curated = sorted(BRANDS, key=lambda b: -b.weight)[: cfg.advertisers]
    rows: list[dict] = []
    for b in curated:
        rows.append(
            dict(
                name=b.name,
                aliases=list(b.aliases),
                domain=b.domain,
                group=b.group,
                category=b.category,
                weight=b.weight,
            )
        )
    cats = list(PRODUCTS)
    used: set[str] = {r["name"].lower() for r in rows}
    n_tail = cfg.advertisers - len(rows)
    tail_groups: list[str] = []
    while n_tail > 0:
        for _ in range(50):  # a fresh word pair while there are any; a numbered name only after that
            name = f"{rng.choice(LONG_TAIL_FIRST)} {rng.choice(LONG_TAIL_SECOND)}"
            if name.lower() not in used:
                break
        else:
            name = f"{name} {len(used)}"
        used.add(name.lower())
        # 15 % of long-tail advertisers join an earlier long-tail advertiser's group.
        group = str(rng.choice(tail_groups)) if tail_groups and rng.random() < 0.15 else name
        tail_groups.append(group)
        domain = slug(name).replace("-", "") + ".com"
        rows.append(
            dict(
                name=name,
                aliases=[domain.removesuffix(".com")],
                domain=domain,
                group=group,
                category=str(rng.choice(cats)),
                weight=float(rng.pareto(1.5) * 0.3 + 0.2),
            )
        )
        n_tail -= 1
    n = len(rows)
    ids = np.arange(1, n + 1, dtype=np.int64) * 101  # non-contiguous ids: nobody may assume id == index
    weights = np.array([r["weight"] for r in rows], dtype=np.float64)
    pop = weights / weights.sum()
    cat_idx = np.array([cats.index(r["category"]) for r in rows])
    groups = [r["group"] for r in rows]
    active = rng.random(n) >= cfg.inactive_share
    by_cat = {c: np.flatnonzero(cat_idx == c) for c in range(len(cats))}
    siblings: dict[int, np.ndarray] = {}
    for i, g in enumerate(groups):
        sib = [j for j, h in enumerate(groups) if h == g and j != i]
        siblings[i] = np.array(sib, dtype=np.int64)
    items_of: list[np.ndarray] = []
    item_title: dict[int, str] = {}
    item_price: dict[int, float] = {}
    item_noun: dict[int, str] = {}
    item_rows: list[tuple[int, int, str, str, float]] = []
    next_item = 1
    for i, r in enumerate(rows):
        k = cfg.items_per_brand if i < len(curated) else max(2, cfg.items_per_brand // 2)
        nouns = PRODUCTS[r["category"]]
        its = []
        for _ in range(k):
            noun = str(rng.choice(nouns))
            title = f"{r['name']} {phrase(str(rng.choice(ADJECTIVES)), noun)}"
            price = float(np.round(rng.lognormal(3.6, 0.7), 2))
            item_title[next_item], item_price[next_item], item_noun[next_item] = title, price, noun
            item_rows.append((next_item, int(ids[i]), title, r["category"], price))
            its.append(next_item)
            next_item += 1
        items_of.append(np.array(its, dtype=np.int64))
    adv_table = pa.table(
        {
            "advertiser_id": ids,
            "name": [r["name"] for r in rows],
            "aliases": [r["aliases"] for r in rows],
            "domain": [r["domain"] for r in rows],
            "brand_group": groups,
            "category": [r["category"] for r in rows],
            "is_active": active,
        }
    )
    items_table = pa.table(
        {
            "item_id": [r[0] for r in item_rows],
            "advertiser_id": [r[1] for r in item_rows],
            "title": [r[2] for r in item_rows],
            "category": [r[3] for r in item_rows],
            "price": [r[4] for r in item_rows],
        }
    )
    cat = Catalog(
        adv={"id": ids, "cat": cat_idx},
        names=[r["name"] for r in rows],
        domains=[r["domain"] for r in rows],
        categories=[r["category"] for r in rows],
        groups=groups,
        active=active,
        cat_names=cats,
        by_cat=by_cat,
        siblings=siblings,
        items_of=items_of,
        item_title=item_title,
        item_price=item_price,
        item_noun=item_noun,
        pop=pop,
    )
    return cat, {"advertisers": conform(adv_table, "advertisers"), "items": conform(items_table, "items")}


def advertiser_daily(cfg: WorldConfig, cat: Catalog) -> pa.Table:
    """Daily spend and revenue; revenue follows popularity so the preset pool is the head."""
    rng = np.random.default_rng([cfg.seed, 10**9 + 9])
    n = len(cat.names)
    bid = np.where(rng.random(n) < cfg.preset_bid_roas_share, "ROAS", "OCPM")
    base_spend = 5000.0 * cat.pop * n / 10 + 20.0
    start = cfg.end_date - timedelta(days=cfg.days - 1)
    dts, aids, spends, revs, bids = [], [], [], [], []
    for d in range(cfg.days + 8):  # a week past the end so label-window spend exists
        day = start + timedelta(days=d)
        spend = base_spend * rng.lognormal(0.0, 0.25, n)
        spend[(rng.random(n) < cfg.zero_spend_prob) | ~cat.active] = 0.0
        roas = rng.lognormal(1.0, 0.3, n)
        dts.extend([day] * n)
        aids.append(cat.adv["id"])
        spends.append(spend)
        revs.append(np.round(spend * roas, 2))
        bids.append(bid)
    return pa.table(
        {
            "dt": pa.array(dts, pa.date32()),
            "advertiser_id": np.concatenate(aids),
            "spend": np.round(np.concatenate(spends), 2),
            "revenue": np.concatenate(revs),
            "bid_type": np.concatenate(bids),
        }
    )
