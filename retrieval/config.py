"""The one configuration of the retrieval stage (paper 3.6.1; design.md "Ranking and retrieval").

Retrieval is a two-tower model (:mod:`retrieval.model`) whose user embedding searches a faiss index
of item (ad) embeddings; the LLM candidate generator restricts that search to the items of the
user's predicted advertisers. :class:`RetrievalConfig` holds every knob of the stage, grouped in
sections: data and store, the two-tower model and its training, and (added by later issues)
candidate generators, blending and the simulated A/B test.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from adprior.store import StoreConfig
from retrieval.index_config import IndexConfig

log = logging.getLogger(__name__)

# Training objectives (paper 3.6.1 "optimized for user engagement"; issue 6):
# impression = every ad impression is a positive (weight 1); click_dwell = clicks weighted by dwell
# time; conversion = high-priority conversions that carry an item id (weight 1).
OBJECTIVES: tuple[str, ...] = ("impression", "click_dwell", "conversion")


@dataclass
class RetrievalConfig:
    """Data, the two-tower model and its training (more sections follow for generators and the A/B test)."""

    # ----------------------------------------------------------------------------- data and store
    data: Path = Path("runs/ranking/world")  # raw-table root (items, advertisers, events: world/schema.py)
    store: StoreConfig = field(
        default_factory=lambda: StoreConfig(repo=Path("runs/ranking/feature_repo"))
    )  # the Feast repo whose user_profile / user_behavior views give the user tower's features
    out: Path = Path("runs/retrieval")  # models, vocabularies and metrics go to <out>/<objective>/

    # ------------------------------------------------------------------- two-tower model: training data
    objective: str = "impression"  # positives: 'impression' | 'click_dwell' | 'conversion' (OBJECTIVES)
    start: date | None = None  # first interaction day; None: the first user_behavior snapshot's event time
    end: date | None = None  # interactions before this day; None: up to the last event
    valid_fraction: float = 0.1  # the latest share of interactions (by time) held out for validation
    max_history: int = 20  # longest list per user bag (active advertisers newest first, categories, brands)
    dwell_cap_s: float = 300.0  # click_dwell: dwell (s) that earns the full weight 1
    dwell_min_weight: float = 0.1  # click_dwell: weight floor (also for clicks without a duration)
    price_buckets: int = 8  # item price -> quantile bucket of the catalogue's prices

    # --------------------------------------------------------------------- two-tower model: architecture
    embedding_dim: int = 64  # output dimension d of both towers (L2-normalised; the faiss vector size)
    feature_dim: int = 32  # dimension of every input embedding table (ids, tokens, profile fields)
    hidden: tuple[int, ...] = (128,)  # hidden layer sizes of each tower's MLP (ReLU between layers)
    share_embeddings: bool = True  # advertiser, category and brand tables shared by the user and item towers

    # ------------------------------------------------------------------ two-tower model: optimisation
    temperature: float = 0.05  # softmax temperature of the dot products of unit vectors
    batch_size: int = 256  # positives per step; the other rows' items are the in-batch negatives
    epochs: int = 5  # passes over the training interactions
    lr: float = 3e-3  # AdamW learning rate
    weight_decay: float = 1e-5  # AdamW weight decay
    mixed_negatives: int = (
        128  # extra negatives per batch drawn uniformly from the catalogue (Yang et al. 2020)
    )
    logq_correction: bool = True  # subtract log(sampling probability) from negatives' logits (Yi et al. 2019)
    recall_ks: tuple[int, ...] = (
        10,
        50,
        100,
    )  # validation recall@k of the positive among all catalogue items
    seed: int = 0  # initialisation, shuffling and negative sampling
    threads: int = 1  # torch CPU threads while training (restored afterwards)

    # ------------------------------------------------------- candidate generators, blending, A/B test
    index: IndexConfig = field(
        default_factory=lambda: IndexConfig(kind="flat")
    )  # faiss index of item vectors
    quotas: dict[str, int] = field(
        default_factory=lambda: {"two_tower": 100, "popularity": 50, "llm": 50}
    )  # L0 quota per generator; blending priority is this order (the LLM channel last: purely additive)
    ranking_models: Path | None = Path(
        "runs/ranking/models"
    )  # ranking run scoring the blend; None: no ranker
    ranking_library: str = "lightgbm"  # which trained ranking library scores candidates
    slots: int = 5  # ads shown per user-day (the top of the ranked blend)
    per_advertiser_cap: int = 1  # most ads of one advertiser in a user-day's slate
    ab_start: date | None = None  # first A/B day; None: the day the latest prediction becomes known
    ab_days: int = 7  # A/B length in days (clipped to the days the ground truth covers)
    ad_effect: float = 0.5  # P(ad-caused conversion | impression) = ad_effect * true daily propensity
    cost_per_impression: float = 0.01  # what an impression costs its advertiser (RoAS denominator)
    ab_salt: str = "adprior-ab-v1"  # arm assignment: hash(salt, user) parity; change it to re-randomise
    ab_seed: int = 0  # outcome draws and bootstrap / permutation seeds
    ab_resamples: int = 2000  # bootstrap and permutation resamples
    sweep_llm_quotas: tuple[int, ...] = (10, 25, 50, 100)  # LLM-generator quotas of the sweep

    def folder(self) -> Path:
        """Where the model of this objective lives: ``<out>/<objective>``."""
        return Path(self.out) / self.objective

    def validate(self) -> None:
        """Raise ValueError for settings that cannot train (names the field)."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r}: expected one of {OBJECTIVES}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction={self.valid_fraction}: need 0 < valid_fraction < 1")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature}: must be > 0")
        if self.dwell_cap_s <= 0 or not 0 <= self.dwell_min_weight <= 1:
            raise ValueError(
                f"dwell_cap_s={self.dwell_cap_s}, dwell_min_weight={self.dwell_min_weight}: "
                "need cap > 0 and 0 <= min weight <= 1"
            )
        for name in ("batch_size", "epochs", "embedding_dim", "feature_dim", "max_history", "price_buckets"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.mixed_negatives < 0:
            raise ValueError(f"mixed_negatives={self.mixed_negatives}: must be >= 0")


def config_to_dict(cfg: RetrievalConfig) -> dict[str, Any]:
    """JSON-ready dict of ``cfg`` (paths and dates as strings, tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, StoreConfig):
            v = {"repo": str(v.repo), "online": v.online, "redis_env": v.redis_env}
        elif isinstance(v, IndexConfig):
            v = dataclasses.asdict(v)
        elif isinstance(v, Path):
            v = str(v)
        elif isinstance(v, date):
            v = v.isoformat()
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def config_from_dict(d: dict[str, Any]) -> RetrievalConfig:
    """Inverse of :func:`config_to_dict`; unknown keys (from another version) are logged and ignored."""
    known = {f.name: f for f in dataclasses.fields(RetrievalConfig)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        log.warning("retrieval config: ignoring unknown fields %s", unknown)
    kw: dict[str, Any] = {}
    for name, v in d.items():
        if name not in known:
            continue
        if name == "store":
            v = StoreConfig(
                repo=Path(v["repo"]),
                online=v.get("online", "sqlite"),
                redis_env=v.get("redis_env", "ADPRIOR_REDIS"),
            )
        elif name == "index":
            v = IndexConfig(**v)
        elif name in ("data", "out") or (name == "ranking_models" and v is not None):
            v = Path(v)
        elif name in ("start", "end", "ab_start"):
            v = None if v is None else date.fromisoformat(v)
        elif isinstance(v, list):
            v = tuple(v)
        kw[name] = v
    return RetrievalConfig(**kw)
