"""The user side of the simulated world: one user's latent state, behaviour and ground truth.

* :class:`LatentUser`: state, conversion rate, weak on-site signal, profile, interests (with an
  optional drift day), affinity per phase and the habit that repeat conversions build; enough to
  recompute the truth. Each user draws from its own RNG seeded by ``(seed, user_id)``.
* :func:`simulate_user`: the user's events into an :class:`EventSink`: high-priority conversions
  (Poisson, advertiser from affinity x habit, ``eps`` noise) foreshadowed by URL visits and
  searches, browsing without conversion, low-priority conversions, background searches, ad
  impressions and clicks.
* :func:`truth_rows`: the daily propensity rows of the ground truth.

The generative story is told in :mod:`world.simulate`, which runs users in chunks.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from world.advertisers import Catalog, phrase, slug
from world.catalog import ADJECTIVES, PRODUCTS
from world.schema import SCHEMAS

if TYPE_CHECKING:
    from world.config import WorldConfig


_EVENT_COLS = SCHEMAS["events"].names


class EventSink:
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


class LatentUser:
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


def simulate_user(u: LatentUser, cfg: WorldConfig, cat: Catalog, start_ts: float, sink: EventSink) -> None:
    """Write every event of user ``u`` over its active days into ``sink`` (draws from ``u.rng``)."""
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
                    f"https://www.{dom}/products/{slug(cat.item_title[item])}",
                    brand=brand,
                    category=catp,
                )
        if rng.random() < cfg.p_offsite_search:
            q = rng.choice(
                [f"{brand.lower()} {noun}", f"{brand.lower()} coupon", f"{dom}", f"{noun} {brand.lower()}"]
            )
            sink.add(uid, ts_of(day - lead - 0.02), "offsite_search", str(q), category=catp, brand=brand)
        if rng.random() < cfg.p_onsite_search * (0.15 if u.weak else 1.0):
            q = phrase(str(rng.choice(ADJECTIVES)), noun) if rng.random() < 0.6 else noun
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
            f"{phrase(ADJECTIVES[aj], nouns[nk % len(nouns)])} ideas",
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


def truth_rows(u: LatentUser, cfg: WorldConfig, cat: Catalog, start: date) -> dict[str, list]:
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
