"""What a shown ad does, drawn from the simulated world's ground truth (``<data root>_truth``).

Only the simulated online A/B test reads the truth; no model does. For user u shown an ad (item i
of advertiser a, price p) on day d:

* ``like = min(1, 5 * affinity(u, a, phase))``, where the phase switches from 0 to 1 on the user's
  drift day (the world's click model, world/simulate.py);
* click with probability ``0.02 + 0.25 * like``;
* a high-priority conversion with a, caused by the ad, with probability
  ``ad_effect * propensity(u, d, a)`` (the truth's daily probability that u converts with a; the
  table keeps each user-day's top advertisers, others count as 0); its value is the item's price;
* the advertiser pays ``cost_per_impression`` per impression (RoAS = conversion value / spend).

Draws use a generator seeded by (seed, user, day, slot), so the same slate shown to the same user
gets the same outcomes whichever arm serves it (common random numbers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class Truth:
    """The parts of a world's ground truth the outcome model needs."""

    start: date  # first simulated day (day index 0)
    affinity: dict[tuple[int, int], dict[int, float]]  # (user, phase) -> advertiser -> weight
    drift_day: dict[int, float]  # user -> day index of the interest drift (NaN: none)
    weak: dict[int, bool]  # user -> weak on-site signal
    propensity: dict[tuple[int, date], dict[int, float]]  # (user, day) -> advertiser -> P(conversion)
    days: list[date]  # days the propensity table covers

    @classmethod
    def load(cls, data_root: Path) -> Truth:
        """Read ``<data_root>_truth`` (world.json, affinity, user_params, propensity)."""
        root = Path(data_root)
        tr = root.parent / (root.name + "_truth")
        if not (tr / "world.json").exists():
            raise FileNotFoundError(f"no ground truth at {tr}: the A/B test needs a simulated world")
        start = date.fromisoformat(json.loads((tr / "world.json").read_text())["summary"]["start_date"])
        aff: dict[tuple[int, int], dict[int, float]] = {}
        for r in pd.read_parquet(tr / "affinity").itertuples(index=False):
            aff.setdefault((int(r.user_id), int(r.phase)), {})[int(r.advertiser_id)] = float(r.weight)
        params = pd.read_parquet(tr / "user_params")
        prop: dict[tuple[int, date], dict[int, float]] = {}
        pt = pd.read_parquet(tr / "propensity")
        pt["dt"] = pd.to_datetime(pt["dt"]).dt.date
        for r in pt.itertuples(index=False):
            prop.setdefault((int(r.user_id), r.dt), {})[int(r.advertiser_id)] = float(r.propensity)
        return cls(
            start=start,
            affinity=aff,
            drift_day={int(u): float(d) for u, d in zip(params["user_id"], params["drift_day"], strict=True)},
            weak={int(u): bool(w) for u, w in zip(params["user_id"], params["weak_onsite"], strict=True)},
            propensity=prop,
            days=sorted(pt["dt"].unique()),
        )

    def like(self, user: int, advertiser: int, day: date) -> float:
        """The world's click affinity of ``user`` for ``advertiser`` on ``day`` (0..1)."""
        idx = (day - self.start).days
        drift = self.drift_day.get(user, float("nan"))
        phase = 1 if not np.isnan(drift) and idx >= drift else 0
        w = self.affinity.get((user, phase), self.affinity.get((user, 0), {})).get(advertiser, 0.0)
        return min(1.0, 5.0 * w)

    def conversion_propensity(self, user: int, advertiser: int, day: date) -> float:
        """P(user converts with advertiser on day) from the truth table (0 outside its top advertisers)."""
        return self.propensity.get((user, day), {}).get(advertiser, 0.0)


@dataclass(frozen=True)
class Outcome:
    """What one impression did, and what it was expected to do."""

    clicked: bool
    converted: bool
    value: float  # conversion value (the item's price) or 0
    cost: float  # what the advertiser paid for the impression
    p_click: float  # the click probability the draw used
    p_conversion: float  # the conversion probability the draw used


def draw(
    truth: Truth,
    user: int,
    day: date,
    slot: int,
    advertiser: int,
    price: float,
    ad_effect: float,
    cost_per_impression: float,
    seed: int,
) -> Outcome:
    """Outcome of showing one ad (see the module docstring for the model)."""
    rng = np.random.default_rng([seed, user, day.toordinal(), slot])
    u_click, u_conv = rng.random(2)
    p_click = 0.02 + 0.25 * truth.like(user, advertiser, day)
    p_conv = min(1.0, ad_effect * truth.conversion_propensity(user, advertiser, day))
    conv = bool(u_conv < p_conv)
    return Outcome(
        bool(u_click < p_click), conv, float(price) if conv else 0.0, cost_per_impression, p_click, p_conv
    )


def window(truth: Truth, start: date, days: int) -> list[date]:
    """The A/B days ``start .. start + days - 1`` that the truth covers.

    Raises:
        ValueError: none of them is covered.
    """
    want = [start + timedelta(days=i) for i in range(days)]
    got = [d for d in want if d in set(truth.days)]
    if not got:
        raise ValueError(
            f"A/B window {start}..{want[-1]} is outside the truth's days {truth.days[0]}..{truth.days[-1]}"
        )
    return got
