"""retrieval.generators + retrieval.abtest end to end on real parts: the shared small world (Spark,
Feast SQLite, the LLM's and the heuristic control's lists), a two-tower model trained for a few steps,
online features, faiss, the three-arm A/B run and its A/A."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandas as pd
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


def test_filtered_generators_only_return_predicted_advertisers(served, ranking_world):
    cfg, now = served["cfg"], served["now"]
    users = sorted(set(ranking_world["preds"][RANKING_ANCHORS[-1]]["user_id"]))[:25]
    serving = Serving(cfg, "impression", now)
    cands = serving.candidates(users)
    lists = {
        "llm": predicted_advertisers(cfg.store, users),
        "heuristic": predicted_advertisers(cfg.store, users, "heuristic_predictions_online"),
    }
    written = pd.read_parquet(ranking_world["heuristic"][RANKING_ANCHORS[-1]]["output"]).set_index("user_id")
    n = dict.fromkeys(lists, 0)
    for u in users:
        assert lists["heuristic"][u] == list(written.loc[u, "advertiser_ids"])  # the control's list online
        for name, preds in lists.items():
            allowed = set(preds[u])
            assert allowed, u
            for c in cands[u][name]:
                assert c.advertiser_id in allowed and c.source == name
                n[name] += 1
        assert len(cands[u]["two_tower"]) == 2 * cfg.quotas["two_tower"]
    assert n["llm"] > 0 and n["heuristic"] > 0


def test_ab_run_three_arms_and_aa(served):
    cfg = served["cfg"]
    res = run_ab(cfg, ("impression",), (5, 10))
    assert [r["llm_quota"] for r in res["runs"]] == [5, 10] and res["n_users"] > 50
    assert res["arms"] == ["control", "heuristic", "llm"]
    metrics = {"roas", "conversions_per_user", "ctr", "advertisers_per_user"}
    for r in res["runs"]:
        assert all(r["users"][a] > 10 for a in res["arms"])
        assert sum(r["users"][a] for a in res["arms"]) == res["n_users"]
        assert 0 < r["impression_share"]["llm"] <= 1 and 0 < r["impression_share"]["heuristic"] <= 1
        assert set(r["pairs"]) == {"heuristic_vs_control", "llm_vs_control", "llm_vs_heuristic"}
        for p in r["pairs"].values():
            for reading in ("overall", "overall_expected", "paired_expected", "paired_weak_expected"):
                assert set(p[reading]) == metrics
                for c in p[reading].values():  # an interval and a p-value for every comparison
                    assert c["ci_low"] <= c["ci_high"] or c["ci_low"] != c["ci_low"]
                    assert 0 <= c["p_value"] <= 1
        pe = {k: p["paired_expected"]["conversions_per_user"] for k, p in r["pairs"].items()}
        assert pe["llm_vs_heuristic"]["control"] == pe["heuristic_vs_control"]["treatment"]  # same policies
        assert pe["llm_vs_heuristic"]["treatment"] == pe["llm_vs_control"]["treatment"]
    report = write_report(res, cfg, "adprior retrieval ab-test (test)", cfg.out / "ab").read_text()
    assert "filtered-generator quota 10" in report and (cfg.out / "ab" / "ab.png").exists()
    assert "| conversions / user | weak on-site |" in report and "LLM vs heuristic" in report
    aa = run_ab(replace(cfg, ab_seed=1), ("impression",), (10,), aa=True)
    r = aa["runs"][0]
    assert r["llm_impression_share"] == 0 and r["impression_share"]["heuristic"] == 0
    for p in r["pairs"].values():  # identical policies
        assert all(c["rel_change"] == 0 for c in p["paired_expected"].values())
