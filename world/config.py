"""The simulated world's knobs: size, time span and behaviour (``WorldConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path


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
