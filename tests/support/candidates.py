"""A small store world for the online candidate features (tests/adprior/test_candidates.py) and the online
ranker (tests/ranking/test_serve.py), built without Spark: a copy of feature_repo with offline tables
written by hand, applied and materialized on SQLite and on a private Redis, and tiny GBDT models of every
feature set trained on its point-in-time rows.

Users: 1 has everything (behaviour, an LLM list and a heuristic list that hold some advertisers, taxonomy
and free-text interests, top brands in other cases); 2 an empty LLM list (unparseable) and no heuristic
list; 3 a profile only; 4 behaviour with empty lists and no last event, and only older lists; 5 lists but
no behaviour, and no gender; 99 is unknown. Advertisers 100-139, some with a null category, name, bid type,
spend or activity flag; 999 is unknown. Every row is in force and within its view's ttl at :data:`NOW`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adprior import store as st
from tests.conftest import ts
from tests.support.store import copy_repo, pred_rows

NOW = ts("2026-06-19 12:00:00")  # the request time (advertiser stats of 06-12 known from 06-13, ttl 7 days)
ADVERTISERS = list(range(100, 140))
UNKNOWN_ADVERTISER = 999
USERS = [1, 2, 3, 4, 5]
UNKNOWN_USER = 99
SETS = ("baseline", "heuristic", "llm")
LIBRARIES = ("xgboost", "lightgbm")
TASK = "ctcvr"
CATEGORIES = [
    "Apparel > Athletic",
    "Apparel > Casual",
    "Home > Decor",
    "Home > Kitchen",
    "Electronics > Audio",
]
LLM_LIST = [
    120,
    105,
    131,
    100,
    101,
    139,
    110,
    111,
    112,
    113,
    114,
    115,
    116,
    117,
    118,
    119,
    121,
    122,
    123,
    124,
]


def candidates_of(user: int) -> list[int]:
    """A request's candidate advertisers: some in the user's lists, most absent, one unknown, repeats."""
    return [
        *LLM_LIST[:6],
        130,
        103,
        107,
        125,
        137,
        138,
        UNKNOWN_ADVERTISER,
        120,
        103,
        ADVERTISERS[user % len(ADVERTISERS)],
    ]


def _behavior() -> pd.DataFrame:
    rows = {
        1: (
            [105, 101, 130],
            ["Home / Decor", "Apparel"],
            ["brand 3", " Brand 7 "],
            ts("2026-06-12 10:00:00"),
        ),
        2: ([100], ["Electronics"], ["Brand 0"], ts("2026-06-11 08:30:00")),
        4: ([], [], [], None),
    }
    return pd.DataFrame(
        [
            {
                "user_id": u,
                "event_timestamp": ts("2026-06-13 00:00:00"),
                "anchor_date": date(2026, 6, 12),
                "n_attributed": len(ids) * 2,
                "n_matched": len(ids),
                "n_active_advertisers": len(ids),
                "active_advertiser_ids": ids,
                "active_advertisers": [f"Brand {i - 100}" for i in ids],
                "attributed_conversions": [],
                "matched_conversions": [],
                "onsite_searches": ["lamp"],
                "offsite_searches": [],
                "offsite_urls": [],
                "top_categories": cats,
                "top_brands": brands,
                "last_event_ts": last,
            }
            for u, (ids, cats, brands, last) in rows.items()
        ]
    )


def _advertisers() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = len(ADVERTISERS)
    frame = pd.DataFrame(
        {
            "advertiser_id": ADVERTISERS,
            "event_timestamp": [ts("2026-06-13 00:00:00")] * n,
            "dt": [date(2026, 6, 12)] * n,
            "spend": np.round(rng.random(n) * 10, 3),
            "revenue": np.round(rng.random(n) * 20, 3),
            "bid_type": rng.choice(["OCPM", "ROAS"], n),
            "name": [f"Brand {i}" for i in range(n)],
            "category": [CATEGORIES[i % len(CATEGORIES)] for i in range(n)],
            "brand_group": [f"Group {i % 6}" for i in range(n)],
            "is_active": [True] * n,
        }
    ).astype({"spend": object, "bid_type": object, "category": object, "name": object, "is_active": object})
    frame.loc[3, "name"] = "BRAND 3"  # matches a top brand of user 1 in another case
    for i in (5, 17):
        frame.loc[i, "category"] = None
    frame.loc[9, "name"] = None
    frame.loc[11, "bid_type"] = None
    frame.loc[13, "spend"] = None
    frame.loc[15, "is_active"] = None
    return frame


def _profiles() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": USERS,
            "event_timestamp": [ts("2026-01-01 00:00:00")] * len(USERS),
            "gender": ["f", "m", "f", "m", None],
            "age": [30, 40, 50, 22, 35],
            "user_state": ["core", "new", "casual", "resurrected", "core"],
            "country": ["US", "US", "DE", "FR", "US"],
        }
    )


def world_repo(dest: Path) -> Path:
    """A copy of feature_repo at ``dest`` with every offline table of the world written (not applied)."""
    repo = copy_repo(dest)
    cfg = st.StoreConfig(repo=repo)
    st.write_partition(cfg, "user_profile", _profiles(), "all")
    st.write_partition(cfg, "user_behavior", _behavior(), "dt=2026-06-12")
    st.write_partition(cfg, "advertiser_stats", _advertisers(), "dt=2026-06-12")
    names = lambda ids: [str(i) for i in ids]  # noqa: E731
    llm = {
        "2026-06-10": [
            (1, [101, 102], names([101, 102]), ["running"], "ok"),
            (4, [110, 111], [], ["kitchen"], "ok"),
        ],
        "2026-06-14": [
            (1, LLM_LIST, names(LLM_LIST), ["Apparel / Athletic", "home decor ideas"], "ok"),
            (2, [], [], [], "unparseable"),
            (5, [139, 138], names([139, 138]), ["Electronics / Audio"], "ok"),
        ],
    }
    heuristic = {
        "2026-06-10": [(4, [111, 137], names([111, 137]), ["Home / Kitchen"], "ok")],
        "2026-06-14": [
            (1, [101, 105, 130, 111], names([101, 105, 130, 111]), ["Home"], "ok"),
            (5, [], [], [], "ok"),
        ],
    }
    for day, rows in llm.items():
        st.write_partition(cfg, "llm_predictions", pred_rows(day, rows), f"dt={day}")
    for day, rows in heuristic.items():
        frame = pred_rows(day, rows).assign(model_version="heuristic-v1", engine="heuristic")
        st.write_partition(cfg, "heuristic_predictions", frame, f"dt={day}")
    return repo


def serving_store(repo: Path, online: str) -> st.StoreConfig:
    """``apply`` + ``materialize`` up to :data:`NOW` of one online store of ``repo``."""
    cfg = st.StoreConfig(repo=repo, online=online)
    st.apply(cfg)
    st.materialize(cfg, end=NOW)
    return cfg


def offline_rows(cfg: st.StoreConfig, service: str) -> pd.DataFrame:
    """Point-in-time rows of every (user incl. the unknown one, advertiser incl. the unknown one) at NOW."""
    pairs = [(u, a) for u in [*USERS, UNKNOWN_USER] for a in [*ADVERTISERS, UNKNOWN_ADVERTISER]]
    entity = pd.DataFrame(pairs, columns=["user_id", "advertiser_id"])
    entity["candidate_advertiser_id"] = entity["advertiser_id"]
    entity["event_timestamp"] = NOW
    return st.historical_features(cfg, entity, service)


def train_models(cfg: st.StoreConfig, out: Path, offline: dict[str, pd.DataFrame]) -> None:
    """Tiny models of every (feature set, library) under ``out`` (ranking.train's layout), fitted to random
    labels of the offline rows with small leaves, so that their scores move with many features."""
    from ranking.config import SERVICES, RankingConfig
    from ranking.dataset import service_features
    from ranking.models import FeatureSpec, SavedModel, best_iteration, fit_model
    from ranking.train import model_dir

    rcfg = RankingConfig(
        store=cfg, n_estimators=25, learning_rate=0.3, max_depth=4, min_child_weight=0.0, threads=1
    )
    rng = np.random.default_rng(0)
    for fset in SETS:
        frame = offline[fset]
        spec = FeatureSpec.fit(frame, service_features(rcfg, SERVICES[fset]))
        x, y = spec.matrix(frame, NOW), (rng.random(len(frame)) < 0.35).astype(int)
        for lib in LIBRARIES:
            model = fit_model(lib, x, y, x, y, rcfg)
            SavedModel(lib, spec, model, best_iteration(lib, model)).save(model_dir(out, TASK, lib, fset))


@dataclass
class ServingWorld:
    """The world on both online stores, its offline rows per feature set and its trained models."""

    repo: Path
    stores: dict[str, st.StoreConfig]  # 'sqlite' | 'redis' -> its StoreConfig
    offline: dict[str, pd.DataFrame]  # feature set -> offline_rows of its service
    models: Path  # the run folder: ranking.train.model_dir(models, task, library, set) holds each model
    redis: str  # host:port of the session's redis-server

    def store(self, online: str, monkeypatch: pytest.MonkeyPatch) -> st.StoreConfig:
        """The StoreConfig of ``online``; for Redis, $ADPRIOR_REDIS is pointed at the server for the test."""
        if online == "redis":
            monkeypatch.setenv("ADPRIOR_REDIS", self.redis)
        return self.stores[online]


@pytest.fixture(scope="session", name="serving_world")
def serving_world_fixture(tmp_path_factory) -> Iterator[ServingWorld]:
    """:class:`ServingWorld` with a private redis-server for the session ($ADPRIOR_REDIS is set only while
    the world is built and, through :meth:`ServingWorld.store`, in the tests that ask for Redis)."""
    from ranking.config import SERVICES
    from tests.support.redis import RedisServer

    tmp = tmp_path_factory.mktemp("serving")
    repo = world_repo(tmp / "feature_repo")
    server = RedisServer()
    server.start()
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("ADPRIOR_REDIS", server.address)
            stores = {online: serving_store(repo, online) for online in ("sqlite", "redis")}
        offline = {fset: offline_rows(stores["sqlite"], SERVICES[fset]) for fset in SETS}
        train_models(stores["sqlite"], tmp / "models", offline)
        yield ServingWorld(repo, stores, offline, tmp / "models", server.address)
    finally:
        server.stop()
