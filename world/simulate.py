"""A simulated ads world with known ground truth: every raw table of the input contract.

The generative story, per user (each user draws from its own RNG seeded by ``(seed, user_id)``,
so users are generated independently, in chunks, in parallel, and the same seed gives the same
world):

* Interests: 1-4 top-level categories with Dirichlet weights; with probability ``drift_prob`` a new
  category enters at a random *drift day* and the old weights fade (interest drift).
* Affinity: for each interest category a consideration set of advertisers (popularity-weighted),
  plus their *brand-group siblings* at reduced weight. Affinity is the truth of who a user likes.
* High-priority conversions follow a daily Poisson process with rate ``rate(state)``; each one picks
  an advertiser from ``(1-eps) * affinity * (1 + habit) + eps * popularity`` where *habit* grows
  with every conversion with that advertiser and decays with half-life ``habit_half_life`` days
  (repeat conversions, recency). The ``eps`` part is label noise.
* Foreshadowing: before a conversion the user may visit the advertiser's URLs (brand extracted),
  search off-site for the brand, or search on-site for the product (category only). Users with
  *weak on-site signal* rarely search on-site. Browsing episodes that end without a conversion,
  low-priority conversions (add_to_cart, page_visit ...) with random advertisers, and background
  on-site searches are the noise.
* Ads: impressions of items (targeted or popular), clicks with dwell time; click-through
  (``ad_conversion``) and view-through (``view_conversion``) conversions come from the same process.

Ground truth, written beside the data root in ``<root>_truth/`` (no model stage reads it):
``user_params``, ``affinity`` (per phase), ``popularity``, and ``propensity``: each user's
probability of a high-priority conversion with each advertiser on each of the last
``truth_days`` days (top ``truth_top_k`` advertisers per user-day).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from tqdm import tqdm

from world.catalog import ADJECTIVES, BRANDS, LONG_TAIL_FIRST, LONG_TAIL_SECOND, PRODUCTS
from world.schema import SCHEMAS, RawLayout, conform

log = logging.getLogger(__name__)


@dataclass
class WorldConfig:
    """Size, time span and behaviour knobs of the simulated world."""

    out: Path = Path("data/world")  # data root; ground truth goes to <out>_truth
    users: int = 2000  # number of users
    advertisers: int = 300  # number of advertisers (curated real brands first, then long tail)
    days: int = 120  # days simulated, ending on end_date
    end_date: date = date(2026, 6, 30)  # last simulated day (UTC)
    seed: int = 0  # master seed; same seed => identical output
    chunk_users: int = 2000  # users generated and written per chunk (bounds memory)
    workers: int = 1  # parallel processes over chunks
    items_per_brand: int = 8  # catalogue items per curated brand (long tail gets half)
    preset_bid_roas_share: float = 0.4  # share of advertisers bidding ROAS (rest OCPM)
    inactive_share: float = 0.04  # advertisers with is_active = False (never a label)
    zero_spend_prob: float = 0.04  # chance an active advertiser has no spend on a given day
    # Behaviour
    rate_by_state: dict[str, float] = field(
        default_factory=lambda: {"new": 0.06, "casual": 0.05, "core": 0.12, "resurrected": 0.07}
    )  # high-priority conversions per day
    state_probs: dict[str, float] = field(
        default_factory=lambda: {"new": 0.12, "casual": 0.45, "core": 0.33, "resurrected": 0.10}
    )  # user_state mix
    eps: float = 0.12  # share of conversions drawn from global popularity (label noise)
    habit_strength: float = 0.8  # multiplicative boost per past conversion with an advertiser
    habit_half_life: float = 30.0  # days for the habit boost to halve (recency)
    sibling_weight: float = 0.35  # affinity of brand-group siblings relative to the liked brand
    drift_prob: float = 0.5  # chance a user's interests drift during the window
    weak_onsite_share: float = 0.3  # users with weak on-site signal
    p_url: float = 0.45  # chance a conversion is preceded by visits to the advertiser's URLs
    p_offsite_search: float = 0.35  # ... by an off-site search naming the brand
    p_onsite_search: float = 0.5  # ... by an on-site product search (x0.15 for weak users)
    intent_lead_days: float = 5.0  # mean days between first intent signal and the conversion
    browse_rate: float = 0.08  # browsing episodes per day that end without a conversion
    low_priority_rate: float = 0.05  # low-priority conversions per day (never labels)
    background_search_rate: float = 0.25  # on-site searches per day from interests, no brand
    impression_rate: float = 0.6  # ad impressions per day
    share_us: float = 0.9  # share of users in the US (the serving population is US only)
    truth_days: int = 21  # days (ending on end_date) for which daily propensity is written
    truth_top_k: int = 30  # advertisers kept per user-day in the propensity table


# ---------------------------------------------------------------------------------------------
# Advertisers and items (small, global, generated once from the seed)
# ---------------------------------------------------------------------------------------------


def _phrase(adjective: str, noun: str) -> str:
    """'organic' + 'organic snacks' -> 'organic snacks', not 'organic organic snacks'."""
    return noun if adjective in noun.split() else f"{adjective} {noun}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class Catalog:
    """Advertisers and items of one world, with arrays for fast per-user sampling."""

    adv: dict[str, np.ndarray]  # column arrays: id, popularity, category index, group index
    names: list[str]
    domains: list[str]
    categories: list[str]  # category path per advertiser
    groups: list[str]
    active: np.ndarray  # bool per advertiser
    cat_names: list[str]  # distinct leaf categories
    by_cat: dict[int, np.ndarray]  # category index -> advertiser indices
    siblings: dict[int, np.ndarray]  # advertiser index -> brand-group siblings
    items_of: list[np.ndarray]  # advertiser index -> item ids
    item_title: dict[int, str]
    item_price: dict[int, float]
    item_noun: dict[int, str]
    pop: np.ndarray  # normalised popularity


def build_catalog(cfg: WorldConfig) -> tuple[Catalog, dict[str, pa.Table]]:
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
        domain = _slug(name).replace("-", "") + ".com"
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
            title = f"{r['name']} {_phrase(str(rng.choice(ADJECTIVES)), noun)}"
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


# ---------------------------------------------------------------------------------------------
# Users
# ---------------------------------------------------------------------------------------------

_EVENT_COLS = SCHEMAS["events"].names


class _Sink:
    """Column buffers for events of one chunk."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {c: [] for c in _EVENT_COLS}

    def add(
        self,
        user_id: int,
        ts: float,
        event_type: str,
        text: str | None = None,
        advertiser_id: int | None = None,
        item_id: int | None = None,
        category: str | None = None,
        brand: str | None = None,
        conversion_type: str | None = None,
        value: float | None = None,
        duration_s: float | None = None,
    ) -> None:
        c = self.cols
        c["user_id"].append(user_id)
        c["ts"].append(ts)
        c["event_type"].append(event_type)
        c["text"].append(text)
        c["advertiser_id"].append(advertiser_id)
        c["item_id"].append(item_id)
        c["category"].append(category)
        c["brand"].append(brand)
        c["conversion_type"].append(conversion_type)
        c["value"].append(value)
        c["duration_s"].append(duration_s)


def _user_state(rng: np.random.Generator, cfg: WorldConfig) -> str:
    states = list(cfg.state_probs)
    p = np.array([cfg.state_probs[s] for s in states])
    return states[rng.choice(len(states), p=p / p.sum())]


def _affinity(
    rng: np.random.Generator, cat: Catalog, cat_w: dict[int, float], cfg: WorldConfig
) -> dict[int, float]:
    """Advertiser index -> affinity weight for one interest phase."""
    aff: dict[int, float] = {}
    for c, w in cat_w.items():
        members = cat.by_cat[c]
        if len(members) == 0:
            continue
        k = min(len(members), int(rng.integers(4, 13)))
        p = cat.pop[members] ** 0.6
        chosen = rng.choice(members, size=k, replace=False, p=p / p.sum())
        strength = rng.gamma(1.0, 1.0, size=k)
        for a, s in zip(chosen, strength, strict=True):
            aff[int(a)] = aff.get(int(a), 0.0) + w * float(s)
            for sib in cat.siblings[int(a)]:
                aff[int(sib)] = aff.get(int(sib), 0.0) + w * float(s) * cfg.sibling_weight
    tot = sum(aff.values())
    return {a: v / tot for a, v in aff.items()}


class _User:
    """The latent state of one user, enough to recompute the truth."""

    def __init__(self, uid: int, cfg: WorldConfig, cat: Catalog, start_ts: float) -> None:
        rng = np.random.default_rng([cfg.seed, uid])
        self.rng = rng
        self.uid = uid
        self.state = _user_state(rng, cfg)
        self.rate = cfg.rate_by_state[self.state] * float(rng.lognormal(0.0, 0.4))
        self.weak = bool(rng.random() < cfg.weak_onsite_share)
        self.country = (
            "US" if rng.random() < cfg.share_us else str(rng.choice(["CA", "GB", "DE", "FR", "AU"]))
        )
        self.age = int(np.clip(rng.normal(36, 12), 18, 80))
        self.gender = str(rng.choice(["female", "male", "unknown"], p=[0.6, 0.3, 0.1]))
        n_cats = len(cat.cat_names)
        cat_pop = np.array([cat.pop[cat.by_cat[c]].sum() for c in range(n_cats)])
        k = int(rng.integers(2, 6))
        cats = rng.choice(n_cats, size=k, replace=False, p=cat_pop / cat_pop.sum())
        w = rng.dirichlet(np.ones(k))
        phase0 = {int(c): float(x) for c, x in zip(cats, w, strict=True)}
        self.drift_day: int | None = None
        phase1 = phase0
        if rng.random() < cfg.drift_prob:
            self.drift_day = int(rng.integers(cfg.days // 4, cfg.days))
            new_c = int(rng.choice(n_cats, p=cat_pop / cat_pop.sum()))
            phase1 = {c: v * 0.3 for c, v in phase0.items()}
            phase1[new_c] = phase1.get(new_c, 0.0) + 0.7
        self.aff0 = _affinity(rng, cat, phase0, cfg)
        self.aff1 = _affinity(rng, cat, phase1, cfg) if phase1 is not phase0 else self.aff0
        self.interest_cats = phase1
        # Active window: new users sign up inside the window; resurrected users return mid-window.
        self.first_day = 0
        if self.state == "new":
            self.first_day = int(rng.integers(0, cfg.days * 3 // 4))
        elif self.state == "resurrected":
            self.first_day = int(rng.integers(cfg.days // 3, cfg.days * 3 // 4))
        signup_offset = self.first_day if self.state == "new" else -int(rng.integers(30, 1500))
        self.signup = datetime.fromtimestamp(start_ts, UTC).date() + timedelta(days=signup_offset)
        self.habit: dict[int, list[float]] = {}  # advertiser index -> conversion days

    def affinity(self, day: float) -> dict[int, float]:
        return self.aff1 if self.drift_day is not None and day >= self.drift_day else self.aff0

    def choice_probs(self, day: float, cfg: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
        """(advertiser indices, probability of each) for a conversion on ``day`` (excluding eps)."""
        idx, p = self.choice_probs_days(np.array([day]), cfg)
        return idx, p[0]

    def choice_probs_days(self, days: np.ndarray, cfg: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised over days: (advertiser indices, [len(days), len(indices)] probabilities).

        Habit counts only conversions strictly before each day.
        """
        keys = set(self.aff0) | set(self.aff1) | set(self.habit)
        idx = np.fromiter(keys, dtype=np.int64, count=len(keys))
        base0 = np.array([self.aff0.get(int(a), 0.0) for a in idx])
        base1 = np.array([self.aff1.get(int(a), 0.0) for a in idx])
        drift = self.drift_day if self.drift_day is not None else np.inf
        base = np.where((days >= drift)[:, None], base1[None, :], base0[None, :])
        boost = np.zeros((len(days), len(idx)))
        for j, a in enumerate(idx):
            ts = self.habit.get(int(a))
            if ts:
                dt = days[:, None] - np.asarray(ts)[None, :]
                boost[:, j] = np.where(dt > 0, np.exp(-np.log(2) * dt / cfg.habit_half_life), 0.0).sum(1)
        # Habit lifts an advertiser even when the user's interests moved on (repeat purchases).
        w = np.where(boost > 0, (base + 0.02) * (1.0 + cfg.habit_strength * boost), base)
        return idx, w / w.sum(1, keepdims=True)


def _simulate_user(u: _User, cfg: WorldConfig, cat: Catalog, start_ts: float, sink: _Sink) -> None:
    rng = u.rng
    day_s = 86400.0
    n_adv = len(cat.names)
    uid = u.uid
    active_days = np.arange(u.first_day, cfg.days)

    def ts_of(day: float) -> float:
        return start_ts + day * day_s

    def foreshadow(a: int, item: int, day: float, converted: bool) -> None:
        brand, dom, catp = cat.names[a], cat.domains[a], cat.categories[a]
        noun = cat.item_noun[item]
        lead = 0.3 + float(rng.exponential(cfg.intent_lead_days))
        if rng.random() < cfg.p_url * (1.0 if converted else 1.2):
            for _ in range(int(rng.integers(1, 4))):
                t = day - lead * rng.random() - 0.01
                sink.add(
                    uid,
                    ts_of(t),
                    "offsite_url",
                    f"https://www.{dom}/products/{_slug(cat.item_title[item])}",
                    brand=brand,
                    category=catp,
                )
        if rng.random() < cfg.p_offsite_search:
            q = rng.choice(
                [f"{brand.lower()} {noun}", f"{brand.lower()} coupon", f"{dom}", f"{noun} {brand.lower()}"]
            )
            sink.add(uid, ts_of(day - lead - 0.02), "offsite_search", str(q), category=catp, brand=brand)
        if rng.random() < cfg.p_onsite_search * (0.15 if u.weak else 1.0):
            q = _phrase(str(rng.choice(ADJECTIVES)), noun) if rng.random() < 0.6 else noun
            sink.add(uid, ts_of(day - lead - 0.03), "onsite_search", q, category=catp)

    def convert(a: int, day: float, high: bool) -> None:
        item = int(rng.choice(cat.items_of[a]))
        aid = int(cat.adv["id"][a])
        title, catp, price = cat.item_title[item], cat.categories[a], cat.item_price[item]
        if high:
            ctype = "purchase" if rng.random() < 0.8 else "checkout"
            foreshadow(a, item, day, True)
            u.habit.setdefault(a, []).append(day)
        else:
            ctype = str(rng.choice(["add_to_cart", "page_visit", "signup", "lead"], p=[0.4, 0.4, 0.1, 0.1]))
        r = rng.random()
        if r < 0.45:
            sink.add(
                uid, ts_of(day), "attributed_conversion", title, aid, item, catp, cat.names[a], ctype, price
            )
        elif r < 0.88:
            sink.add(
                uid, ts_of(day), "matched_conversion", title, aid, item, catp, cat.names[a], ctype, price
            )
        elif r < 0.96:  # click-through: impression, click with dwell, then the conversion
            t0 = day - float(rng.uniform(0.001, 0.3))
            sink.add(uid, ts_of(t0), "impression", title, aid, item, catp)
            sink.add(
                uid,
                ts_of(t0 + 0.0005),
                "click",
                title,
                aid,
                item,
                catp,
                duration_s=float(rng.lognormal(3.5, 0.8)),
            )
            sink.add(uid, ts_of(day), "ad_conversion", title, aid, item, catp, cat.names[a], ctype, price)
        else:  # view-through: impression without a click
            t0 = day - float(rng.uniform(0.01, 1.0))
            sink.add(uid, ts_of(t0), "impression", title, aid, item, catp)
            sink.add(uid, ts_of(day), "view_conversion", title, aid, item, catp, cat.names[a], ctype, price)

    # High-priority conversions: Poisson per day, advertiser from affinity x habit, eps noise.
    n_conv = rng.poisson(u.rate, size=len(active_days))
    for d, k in zip(active_days, n_conv, strict=True):
        for _ in range(int(k)):
            day = float(d) + float(rng.uniform(0.05, 0.95))
            if rng.random() < cfg.eps:
                a = int(rng.choice(n_adv, p=cat.pop))
            else:
                idx, p = u.choice_probs(day, cfg)
                a = int(idx[rng.choice(len(idx), p=p)])
            convert(a, day, True)
    # Browsing without conversion, low-priority conversions, background searches, impressions.
    span = len(active_days)
    for _ in range(int(rng.poisson(cfg.browse_rate * span))):
        day = float(rng.uniform(u.first_day, cfg.days))
        aff = u.affinity(day)
        a = (
            int(rng.choice(list(aff), p=list(aff.values())))
            if rng.random() < 0.7
            else int(rng.choice(n_adv, p=cat.pop))
        )
        foreshadow(a, int(rng.choice(cat.items_of[a])), day, False)
    for _ in range(int(rng.poisson(cfg.low_priority_rate * span))):
        day = float(rng.uniform(u.first_day, cfg.days))
        a = (
            int(rng.choice(n_adv, p=cat.pop))
            if rng.random() < 0.5
            else int(rng.choice(list(u.affinity(day))))
        )
        convert(a, day, False)
    n_bg = int(rng.poisson(cfg.background_search_rate * span * (0.15 if u.weak else 1.0)))
    cats = np.array(list(u.interest_cats), dtype=np.int64)
    cw = np.array(list(u.interest_cats.values()))
    days = rng.uniform(u.first_day, cfg.days, size=n_bg)
    picked = np.where(
        rng.random(n_bg) < 0.8,
        cats[rng.choice(len(cats), size=n_bg, p=cw / cw.sum())],
        rng.integers(len(cat.cat_names), size=n_bg),
    )
    adjs = rng.integers(len(ADJECTIVES), size=n_bg)
    noun_pick = rng.integers(1 << 30, size=n_bg)
    for day, c, aj, nk in zip(days, picked, adjs, noun_pick, strict=True):
        nouns = PRODUCTS[cat.cat_names[c]]
        sink.add(
            uid,
            ts_of(day),
            "onsite_search",
            f"{_phrase(ADJECTIVES[aj], nouns[nk % len(nouns)])} ideas",
            category=cat.cat_names[c],
        )
    # Ad impressions: half targeted by the user's affinity, half by popularity; clicks by affinity.
    n_imp = int(rng.poisson(cfg.impression_rate * span))
    days = np.sort(rng.uniform(u.first_day, cfg.days, size=n_imp))
    advs = rng.choice(n_adv, size=n_imp, p=cat.pop)
    targeted = rng.random(n_imp) < 0.5
    for ph, aff_map in enumerate((u.aff0, u.aff1)):
        if u.drift_day is None:
            mask = targeted if ph == 0 else np.zeros(n_imp, bool)
        else:
            mask = targeted & ((days >= u.drift_day) if ph else (days < u.drift_day))
        if mask.any():
            keys = np.fromiter(aff_map, dtype=np.int64)
            probs = np.fromiter(aff_map.values(), dtype=np.float64)
            advs[mask] = keys[rng.choice(len(keys), size=int(mask.sum()), p=probs / probs.sum())]
    u_click = rng.random(n_imp)
    item_pick = rng.integers(1 << 30, size=n_imp)
    dwell_noise = rng.normal(0.0, 0.8, size=n_imp)
    for day, a, uc, ip, dn in zip(days, advs, u_click, item_pick, dwell_noise, strict=True):
        a = int(a)
        its = cat.items_of[a]
        item = int(its[ip % len(its)])
        aid, title, catp = int(cat.adv["id"][a]), cat.item_title[item], cat.categories[a]
        sink.add(uid, ts_of(day), "impression", title, aid, item, catp)
        like = min(1.0, u.affinity(day).get(a, 0.0) * 5)
        if uc < 0.02 + 0.25 * like:
            sink.add(
                uid,
                ts_of(day + 0.0005),
                "click",
                title,
                aid,
                item,
                catp,
                duration_s=float(math.exp(2.5 + 2.0 * like + dn)),
            )


def _truth_rows(u: _User, cfg: WorldConfig, cat: Catalog, start: date) -> dict[str, list]:
    """Daily propensity for the last truth_days days: P(high-priority conversion with a on day)."""
    out: dict[str, list] = {"user_id": [], "dt": [], "advertiser_id": [], "propensity": []}
    days = np.arange(max(u.first_day, cfg.days - cfg.truth_days), cfg.days)
    if len(days) == 0:
        return out
    idx, p = u.choice_probs_days(days.astype(np.float64), cfg)
    top_pop = np.argsort(-cat.pop)[: cfg.truth_top_k]
    cols = np.union1d(idx, top_pop)
    prob = np.zeros((len(days), len(cols)))
    prob[:, np.searchsorted(cols, idx)] += u.rate * (1 - cfg.eps) * p
    prob[:, np.searchsorted(cols, top_pop)] += u.rate * cfg.eps * cat.pop[top_pop]
    k = min(cfg.truth_top_k, len(cols))
    order = np.argsort(-prob, axis=1)[:, :k]
    for r, d in enumerate(days):
        day = start + timedelta(days=int(d))
        for j in order[r]:
            out["user_id"].append(u.uid)
            out["dt"].append(day)
            out["advertiser_id"].append(int(cat.adv["id"][cols[j]]))
            out["propensity"].append(float(prob[r, j]))
    return out


def _write_partitioned(table: pa.Table, folder: Path, tag: str) -> None:
    pads.write_dataset(
        table,
        folder,
        format="parquet",
        partitioning=pads.partitioning(pa.schema([("dt", pa.string())]), flavor="hive"),
        basename_template=f"part-{tag}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
    )


def _run_chunk(args: tuple[WorldConfig, int, int]) -> dict[str, int]:
    cfg, lo, hi = args
    cat, _ = build_catalog(cfg)
    layout = RawLayout(Path(cfg.out))
    start = cfg.end_date - timedelta(days=cfg.days - 1)
    start_ts = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
    sink = _Sink()
    users: dict[str, list] = {f: [] for f in SCHEMAS["users"].names}
    params: dict[str, list] = {
        k: [] for k in ("user_id", "state", "rate", "weak_onsite", "drift_day", "first_day")
    }
    aff_rows: dict[str, list] = {"user_id": [], "phase": [], "advertiser_id": [], "weight": []}
    truth: dict[str, list] = {"user_id": [], "dt": [], "advertiser_id": [], "propensity": []}
    for uid in range(lo, hi):
        u = _User(uid, cfg, cat, start_ts)
        _simulate_user(u, cfg, cat, start_ts, sink)
        for k, v in zip(users, (uid, u.age, u.gender, u.state, u.country, u.signup), strict=True):
            users[k].append(v)
        for k, v in zip(params, (uid, u.state, u.rate, u.weak, u.drift_day, u.first_day), strict=True):
            params[k].append(v)
        for phase, aff in ((0, u.aff0), (1, u.aff1)):
            for a, w in aff.items():
                aff_rows["user_id"].append(uid)
                aff_rows["phase"].append(phase)
                aff_rows["advertiser_id"].append(int(cat.adv["id"][a]))
                aff_rows["weight"].append(w)
        for k, v in _truth_rows(u, cfg, cat, start).items():
            truth[k].extend(v)
    tag = f"{lo:09d}"
    ev = sink.cols
    ts = pa.array([int(t * 1e6) for t in ev["ts"]], pa.timestamp("us", tz="UTC"))
    events = conform(pa.table({**{k: v for k, v in ev.items() if k != "ts"}, "ts": ts}), "events")
    # Keep events inside the simulated window: foreshadowing may reach before the start, a click
    # after an impression late on the last day may spill past the end.
    lo = pa.scalar(int(start_ts * 1e6), pa.timestamp("us", tz="UTC"))
    hi = pa.scalar(int((start_ts + cfg.days * 86400) * 1e6), pa.timestamp("us", tz="UTC"))
    events = events.filter(pc.and_(pc.greater_equal(events["ts"], lo), pc.less(events["ts"], hi)))
    events = events.append_column("dt", pc.strftime(events.column("ts"), format="%Y-%m-%d"))
    _write_partitioned(events, layout.table("events"), tag)
    pq.write_table(conform(pa.table(users), "users"), layout.table("users") / f"part-{tag}.parquet")
    tr = layout.truth
    pq.write_table(pa.table(params), tr / "user_params" / f"part-{tag}.parquet")
    pq.write_table(pa.table(aff_rows), tr / "affinity" / f"part-{tag}.parquet")
    pq.write_table(pa.table(truth), tr / "propensity" / f"part-{tag}.parquet")
    return {"users": hi - lo, "events": len(events)}


def _chunks(cfg: WorldConfig) -> Iterator[tuple[WorldConfig, int, int]]:
    for lo in range(0, cfg.users, cfg.chunk_users):
        yield cfg, lo, min(cfg.users, lo + cfg.chunk_users)


def simulate(cfg: WorldConfig) -> dict:
    """Generate the world under ``cfg.out`` (raw tables) and ``<out>_truth`` (ground truth).

    Args:
        cfg: sizes, seed and behaviour knobs; see ``WorldConfig``.

    Returns:
        A summary: counts per table, events per type, seconds taken.
    """
    t0 = time.perf_counter()
    out = Path(cfg.out)
    layout = RawLayout(out)
    for p in (out, layout.truth):
        if p.exists():
            shutil.rmtree(p)
    for name in ("users", "advertisers", "items"):
        layout.table(name).mkdir(parents=True)
    for name in ("user_params", "affinity", "propensity"):
        (layout.truth / name).mkdir(parents=True)
    cat, tables = build_catalog(cfg)
    pq.write_table(tables["advertisers"], layout.table("advertisers") / "part-0.parquet")
    pq.write_table(tables["items"], layout.table("items") / "part-0.parquet")
    daily = advertiser_daily(cfg, cat)
    daily_out = conform(daily, "advertiser_daily").append_column(
        "dt", pa.array([d.isoformat() for d in daily.column("dt").to_pylist()])
    )
    _write_partitioned(daily_out, layout.table("advertiser_daily"), "0")
    pq.write_table(
        pa.table({"advertiser_id": cat.adv["id"], "popularity": cat.pop}), layout.truth / "popularity.parquet"
    )
    n_events = 0
    chunks = list(_chunks(cfg))
    bar = tqdm(total=cfg.users, desc="simulate users", unit="user", disable=None)
    if cfg.workers > 1:
        # 'spawn': never fork a process that may hold a JVM (Spark) or other threads.
        with ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for res in pool.map(_run_chunk, chunks):
                n_events += res["events"]
                bar.update(res["users"])
    else:
        for ch in chunks:
            res = _run_chunk(ch)
            n_events += res["events"]
            bar.update(res["users"])
    bar.close()
    summary = {
        "users": cfg.users,
        "advertisers": len(cat.names),
        "items": tables["items"].num_rows,
        "events": n_events,
        "days": cfg.days,
        "start_date": (cfg.end_date - timedelta(days=cfg.days - 1)).isoformat(),
        "end_date": cfg.end_date.isoformat(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    cfg_dict = {k: (str(v) if isinstance(v, Path | date) else v) for k, v in asdict(cfg).items()}
    (layout.truth / "world.json").write_text(json.dumps({"config": cfg_dict, "summary": summary}, indent=2))
    log.info("simulated world: %s", summary)
    return summary
