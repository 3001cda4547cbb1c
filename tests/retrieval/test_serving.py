"""retrieval.generators + retrieval.abtest end to end on real parts: the shared small world (Spark,
Feast SQLite), a two-tower model trained for a few steps, online features, faiss, the A/B run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from adprior import store as st
from retrieval.ab_report import write_report
from retrieval.abtest import run_ab
from retrieval.config import RetrievalConfig
from retrieval.generators import predicted_advertisers
from retrieval.serving import Serving
from retrieval.train import train
from tests.conftest import RANKING_ANCHORS

pytestmark = [
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature"),
    pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning"),
]


@pytest.fixture(scope="module")
def served(ranking_world, tmp_path_factory) -> dict:
    now = datetime.combine(RANKING_ANCHORS[-1] + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    st.materialize(ranking_world["store"], end=now + timedelta(hours=1))
    cfg = RetrievalConfig(
        data=ranking_world["data"],
        store=ranking_world["store"],
        out=tmp_path_factory.mktemp("retrieval"),
        epochs=1,
        batch_size=128,
        mixed_negatives=32,
        end=now.date(),
        ranking_models=None,
        quotas={"two_tower": 3, "popularity": 2, "llm": 10},
        sweep_llm_quotas=(5, 10),
        ab_days=3,
        ab_resamples=100,
        slots=8,
    )  # no ranker: blend order
    train(cfg)
    return {"cfg": cfg, "now": now}


def test_llm_generator_only_returns_predicted_advertisers(served, ranking_world):
    cfg, now = served["cfg"], served["now"]
    users = sorted(set(ranking_world["preds"][RANKING_ANCHORS[-1]]["user_id"]))[:25]
    serving = Serving(cfg, "impression", now)
    cands = serving.candidates(users)
    preds = predicted_advertisers(cfg.store, users)
    n_llm = 0
    for u in users:
        allowed = set(preds[u])
        assert allowed, u
        for c in cands[u]["llm"]:
            assert c.advertiser_id in allowed and c.source == "llm"
            n_llm += 1
        assert len(cands[u]["two_tower"]) == 2 * cfg.quotas["two_tower"]
    assert n_llm > 0


def test_ab_run_and_aa(served):
    cfg = served["cfg"]
    res = run_ab(cfg, ("impression",), (5, 10))
    assert [r["llm_quota"] for r in res["runs"]] == [5, 10] and res["n_users"] > 50
    for r in res["runs"]:
        assert 0 < r["llm_impression_share"] <= 1
        assert set(r["overall"]) == {"roas", "conversions_per_user", "ctr", "advertisers_per_user"}
    report = write_report(res, cfg, "adprior retrieval ab-test (test)", cfg.out / "ab")
    assert "LLM quota 10" in report.read_text() and (cfg.out / "ab" / "ab.png").exists()
    aa = run_ab(replace(cfg, ab_seed=1), ("impression",), (10,), aa=True)
    r = aa["runs"][0]
    assert r["llm_impression_share"] == 0
    assert all(c["rel_change"] == 0 for c in r["paired_expected"].values())  # identical policies
