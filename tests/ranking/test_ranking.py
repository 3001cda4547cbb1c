"""ranking/: impression labels (Spark), the Feast training set (point in time), GBDT training, Table 5
(baseline / + heuristic-list / + LLM features), and the online scoring path, on real parts: a simulated
world, Spark, a Feast repo with SQLite.

Predictions in the store are written directly (PREDICTION_SCHEMA rows that list each user's past
advertisers and then the day's preset pool): the ranking stage reads a predictions table, whichever
model wrote it, and the LLM itself is exercised by the inference tests. The heuristic control's lists are
written by its real writer (adprior.controls) for the same users.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from adprior import store as st
from llm_predictor.data.compiled import load_examples
from ranking.config import RankingConfig
from ranking.dataset import time_split
from ranking.evaluate import compare, metrics, table5_lines, weighted_metrics
from ranking.labels import label_impressions
from ranking.models import FeatureSpec, SavedModel
from ranking.serve import OnlineRanker
from ranking.train import evaluate, model_dir, train
from tests.conftest import RANKING_ANCHORS, event, utc_midnight, write_raw

pytestmark = [
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature"),
    pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning"),
]
ANCHORS = RANKING_ANCHORS


@pytest.fixture(scope="module")
def world(ranking_world) -> dict:
    return ranking_world


@pytest.fixture(scope="module")
def trained(world) -> dict:
    cfg = world["cfg"]
    info = train(cfg)
    results = evaluate(cfg, "adprior ranking train (test)")
    return {"info": info, "results": results, "dataset": pd.read_parquet(cfg.out / "dataset" / "llm.parquet")}


# ------------------------------------------------------------------------------------------ labels


def test_label_rules(tmp_path, spark):
    a, b = 101, 202
    imp = [  # user 1: impressions of advertiser a's item 11 at 10:00 on days 2, 3, 4, 5, 6 and of b
        event(f"2026-06-0{d} 10:00:00", "impression", advertiser_id=a, item_id=11) for d in (2, 3, 4, 5, 6)
    ] + [event("2026-06-07 10:00:00", "impression", advertiser_id=b, item_id=22)]
    events = [
        *imp,
        # day 2: click 10 min later, purchase with a 3 days later -> ctcvr
        event("2026-06-02 10:10:00", "click", advertiser_id=a, item_id=11),
        event("2026-06-05 09:00:00", "matched_conversion", advertiser_id=a, conversion_type="purchase"),
        # day 3: no click; the 06-05 purchase is 47 h later: outside the 1-day view window -> nothing
        # day 4: no click, conversion 23 h later (the same 06-05 purchase) -> vtcvr
        # day 5: click 2 h later (outside the 1 h click window); 06-06 add_to_cart is low priority -> nothing
        event("2026-06-05 12:00:00", "click", advertiser_id=a, item_id=11),
        event("2026-06-06 09:00:00", "attributed_conversion", advertiser_id=a, conversion_type="add_to_cart"),
        # day 6: no click, a purchase with b (another advertiser) an hour later -> nothing
        event("2026-06-06 11:00:00", "attributed_conversion", advertiser_id=b, conversion_type="purchase"),
        # day 7 (b): clicked, conversion 6 days later -> ctcvr, but 06-07 + 7 days is past the data end
        event("2026-06-07 10:01:00", "click", advertiser_id=b, item_id=22),
        event("2026-06-13 10:00:00", "ad_conversion", advertiser_id=b, conversion_type="checkout"),
        event("2026-06-14 10:00:00", "onsite_search", user_id=2, text="x"),  # data end
    ]
    data = write_raw(tmp_path / "raw", {"events": events})
    cfg = RankingConfig(data=data, start=date(2026, 6, 1))
    got = label_impressions(cfg).set_index(
        pd.Index([d.day for d in label_impressions(cfg)["event_timestamp"]])
    )
    assert list(got.index) == [2, 3, 4, 5, 6]  # day 7 dropped: its 7-day label window is not over
    assert got["clicked"].tolist() == [True, False, False, False, False]
    assert got["ctcvr"].tolist() == [1, 0, 0, 0, 0]
    assert got["vtcvr"].tolist() == [0, 0, 1, 0, 0]
    assert got["impression_id"].is_unique


def test_label_window_needs_predictions_or_start(tmp_path, spark):
    data = write_raw(
        tmp_path / "raw", {"events": [event("2026-06-02 10:00:00", "impression", advertiser_id=1, item_id=1)]}
    )
    with pytest.raises(ValueError, match="no LLM predictions"):
        label_impressions(RankingConfig(data=data))
    with pytest.raises(ValueError, match="empty impression window"):
        label_impressions(RankingConfig(data=data, start=date(2026, 6, 1)))


# ------------------------------------------------------------------------------------- pure logic


def test_time_split_orders_by_time():
    t = pd.Series(pd.date_range("2026-06-01", periods=100, freq="h", tz="UTC"))
    s = time_split(t, 0.2, 0.3)
    assert s.value_counts().to_dict() == {"train": 50, "valid": 20, "test": 30}
    assert t[s == "train"].max() < t[s == "valid"].min() and t[s == "valid"].max() < t[s == "test"].min()
    with pytest.raises(ValueError, match="valid_fraction"):
        time_split(t, 0.6, 0.5)


def test_feature_spec_matrix():
    train_frame = pd.DataFrame(
        {
            "a": [1, 2],
            "c": ["x", "y"],
            "t": pd.to_datetime(["2026-06-01", "2026-06-02"], utc=True),
            "b": [True, False],
        }
    )
    spec = FeatureSpec.fit(train_frame, ["a", "c", "t", "b"])
    assert spec.categorical == {"c": ["x", "y"]} and spec.timestamps == ["t"]
    m = spec.matrix(
        pd.DataFrame(
            {
                "a": [3, None],
                "c": ["y", "new"],
                "t": [pd.Timestamp("2026-06-01", tz="UTC"), None],
                "b": [True, None],
            }
        ),
        pd.Timestamp("2026-06-03", tz="UTC"),
    )
    assert list(m.columns) == ["a", "c", "t_age_days", "b"]
    assert m["a"].tolist()[0] == 3.0 and np.isnan(m["a"].tolist()[1])
    assert m["c"].tolist()[0] == "y" and pd.isna(m["c"].tolist()[1])  # unseen level -> missing
    assert m["t_age_days"].tolist()[0] == 2.0 and m["b"].tolist()[0] == 1.0
    with pytest.raises(ValueError, match=r"feature 'a', row 1: 'oops'"):
        spec.matrix(
            pd.DataFrame({"a": [1, "oops"], "c": ["x", "x"], "t": [None, None], "b": [1, 1]}),
            pd.Timestamp("2026-06-03", tz="UTC"),
        )
    with pytest.raises(KeyError, match="'b'"):
        spec.matrix(pd.DataFrame({"a": [1], "c": ["x"], "t": [None]}), pd.Timestamp("2026-06-03", tz="UTC"))


def test_compare_identical_models_gives_zero_and_better_model_wins():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 10)
    y = (rng.random(2000) < 0.1).astype(int)
    noise = rng.random(2000)
    same = compare(y, noise, noise, users, resamples=200, confidence=0.95, seed=0)
    assert all(v == 0 for v in same["delta_pct"].values())
    assert all(lo == hi == 0 for lo, hi in same["ci_pct"].values())
    better = np.clip(noise * 0.5 + y * 0.4, 0.01, 0.99)
    r = compare(y, noise, better, users, resamples=200, confidence=0.95, seed=0)
    assert r["ci_pct"]["auc"][0] > 0 and r["ci_pct"]["pr_auc"][0] > 0 and r["ci_pct"]["loss"][1] < 0
    assert r["p_improve"]["auc"] == 1.0 and r["users"] == 200 and r["n"] == 2000


def test_weighted_metrics_equal_metrics_of_the_repeated_rows():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(int)
    p = np.round(rng.random(300), 1)  # many ties: AUC and AP must group them as scikit-learn does
    w = rng.integers(0, 4, size=(5, 300))
    w[4] = 0
    w[4, np.flatnonzero(y == 0)[:10]] = 2  # one class only: AUCs undefined
    got = weighted_metrics(y, p, w)
    for b in range(4):
        rows = np.repeat(np.arange(300), w[b])
        np.testing.assert_allclose(got[:, b], metrics(y[rows], p[rows]), rtol=1e-10)
    assert np.isfinite(got[0, 4]) and np.isnan(got[1:, 4]).all()


# ------------------------------------------------------------------------------- training set (PIT)


def test_training_set_is_point_in_time(world, trained):
    ds = trained["dataset"]
    assert len(ds) > 500 and ds["impression_id"].is_unique
    known = {day: utc_midnight(day + timedelta(days=1)) for day in ANCHORS}
    assert ds["event_timestamp"].min() >= known[ANCHORS[0]]  # default window starts at the first prediction
    for r in ds.sample(n=300, random_state=0).itertuples():
        in_force = [d for d in ANCHORS if known[d] <= r.event_timestamp]
        day = max(in_force)  # the latest prediction known at the impression, never a later one
        pred = world["preds"][day].set_index("user_id")
        if r.user_id in pred.index:
            ids = list(pred.loc[r.user_id, "advertiser_ids"])
            want = ids.index(r.advertiser_id) + 1 if r.advertiser_id in ids else 0
            assert r.llm_has_prediction == 1
        else:
            older = [d for d in in_force if r.user_id in set(world["preds"][d]["user_id"])]
            assert r.llm_has_prediction == (1 if older else 0)
            if not older:
                want = 0
            else:
                ids = list(world["preds"][max(older)].set_index("user_id").loc[r.user_id, "advertiser_ids"])
                want = ids.index(r.advertiser_id) + 1 if r.advertiser_id in ids else 0
        assert r.llm_rank == want, (r.user_id, r.event_timestamp, r.advertiser_id)
        # behaviour: the latest snapshot known at the impression
        ex = load_examples(world["examples"], day).set_index("user_id")
        if r.user_id in ex.index:
            assert r.n_active_advertisers == len(ex.loc[r.user_id, "active_advertiser_ids"])


def test_services_share_rows_and_differ_only_by_predictor_features(world, trained):
    base = pd.read_parquet(world["cfg"].out / "dataset" / "baseline.parquet")
    heur = pd.read_parquet(world["cfg"].out / "dataset" / "heuristic.parquet")
    llm = trained["dataset"]
    for frame, prefix in ((llm, "llm_"), (heur, "heuristic_")):
        assert base["impression_id"].equals(frame["impression_id"])
        extra = set(frame.columns) - set(base.columns)
        assert extra and all(c.startswith(prefix) for c in extra)
        assert [c.removeprefix(prefix) for c in sorted(extra)] == [
            c.removeprefix("llm_") for c in sorted(set(llm.columns) - set(base.columns))
        ]  # the same candidate features over the two sources


def test_heuristic_features_are_point_in_time(world):
    heur = pd.read_parquet(world["cfg"].out / "dataset" / "heuristic.parquet")
    lists = {
        day: pd.read_parquet(s["output"]).set_index("user_id")["advertiser_ids"]
        for day, s in world["heuristic"].items()
    }
    assert all(s["users"] == len(world["preds"][d]) for d, s in world["heuristic"].items())  # same users
    for r in heur.sample(n=200, random_state=1).itertuples():
        known = [d for d in ANCHORS if utc_midnight(d + timedelta(days=1)) <= r.event_timestamp]
        have = [d for d in known if r.user_id in lists[d].index]
        ids = list(lists[max(have)].loc[r.user_id]) if have else []
        assert r.heuristic_has_prediction == (1 if have else 0)
        assert r.heuristic_rank == (ids.index(r.advertiser_id) + 1 if r.advertiser_id in ids else 0)


# ------------------------------------------------------------------------------------ train + eval


def test_train_writes_models_predictions_and_table5(world, trained):
    cfg = world["cfg"]
    res = trained["results"]
    assert set(res["comparisons"]) == {f"{t}/{lib}" for t in cfg.tasks for lib in cfg.libraries}
    for r in res["comparisons"].values():
        assert 0 < r["baseline"]["auc"] < 1 and r["llm"]["loss"] > 0
        for m in ("loss", "auc", "pr_auc"):
            lo, hi = r["ci_pct"][m]
            assert lo <= r["delta_pct"][m] <= hi or np.isnan(r["delta_pct"][m])
    assert set(res["controls"]) == set(res["comparisons"])  # Table 5's three rows, and LLM over heuristic
    for key, c in res["controls"].items():
        assert c["heuristic"]["baseline"] == res["comparisons"][key]["baseline"]  # the same rows and model
        assert c["llm_vs_heuristic"]["llm"] == res["comparisons"][key]["llm"]
        assert c["llm_vs_heuristic"]["heuristic"] == c["heuristic"]["heuristic"]
        for r in c.values():
            for m in ("loss", "auc", "pr_auc"):
                lo, hi = r["ci_pct"][m]
                assert lo <= r["delta_pct"][m] <= hi or np.isnan(r["delta_pct"][m])
    report = (cfg.out / "report.md").read_text()
    assert "Table 5" in report and "| ctcvr | xgboost | + LLM features | baseline |" in report
    for label in ("+ heuristic-list features | baseline", "LLM over heuristic (paired) | heuristic"):
        assert f"| vtcvr | lightgbm | {label} |" in report
    assert "heuristic_rank" in trained["info"]["importance_heuristic"]["ctcvr/lightgbm"]
    assert (cfg.out / "table5.png").stat().st_size > 10_000
    imp = trained["info"]["importance"]["ctcvr/lightgbm"]
    assert abs(sum(imp.values()) - 1) < 1e-6 and "llm_rank" in imp
    # a saved model scores the test rows as it did when trained
    preds = pd.read_parquet(cfg.out / "predictions.parquet")
    ds = trained["dataset"].set_index("impression_id").loc[preds["impression_id"]].reset_index()
    for lib in cfg.libraries:
        m = SavedModel.load(model_dir(cfg.out, "vtcvr", lib, "llm"))
        got = m.predict(ds, ds["event_timestamp"])
        np.testing.assert_allclose(got, preds[f"p_vtcvr_{lib}_llm"], rtol=1e-6)
        # the booster on FeatureSpec.array = the library's own predict on the pandas categorical matrix
        x = m.spec.matrix(ds, ds["event_timestamp"])
        lib_own = m.model.predict_proba(x)[:, 1] if lib == "xgboost" else m.model.predict(x)
        np.testing.assert_allclose(got, lib_own, rtol=1e-6, atol=1e-9)


def test_online_scores_equal_offline_scores(world, trained):
    cfg = world["cfg"]
    now = utc_midnight(ANCHORS[-1] + timedelta(days=1)) + timedelta(hours=6)
    st.materialize(cfg.store, end=now)
    users = sorted(set(world["preds"][ANCHORS[-1]]["user_id"]))[:4]
    advs = [int(a) for a in world["preds"][ANCHORS[-1]]["advertiser_ids"].iloc[0][:6]] + [
        999_999
    ]  # + unknown
    for lib in cfg.libraries:
        online = OnlineRanker.load(cfg.out, "ctcvr", lib, "llm", cfg.store)  # the fast path
        feast = OnlineRanker.load(cfg.out, "ctcvr", lib, "llm", cfg.store, fast=False)  # Feast runs the ODFVs
        model = SavedModel.load(model_dir(cfg.out, "ctcvr", lib, "llm"))
        for u in users:
            entity = pd.DataFrame(
                {"user_id": u, "advertiser_id": advs, "candidate_advertiser_id": advs, "event_timestamp": now}
            )
            offline = st.historical_features(cfg.store, entity, "ranking_llm")
            want = model.predict(offline, pd.Timestamp(now))
            got = online.score(u, [*advs, advs[0]], now=now)  # a repeated advertiser gets the same score
            np.testing.assert_allclose(got[:-1], want, rtol=1e-9, atol=0)
            np.testing.assert_array_equal(got, feast.score(u, [*advs, advs[0]], now=now))
            assert got[-1] == got[0]
            assert online.score(u, []).shape == (0,)


def test_online_scoring_needs_a_trained_model(world, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"spec\.json"):
        OnlineRanker.load(tmp_path, "ctcvr", "xgboost", "llm", world["store"])
    with pytest.raises(ValueError, match="feature set"):
        OnlineRanker.load(tmp_path, "ctcvr", "xgboost", "nope", world["store"])


def test_eval_reruns_from_saved_predictions(world, trained):
    cfg = replace(world["cfg"], bootstrap_resamples=30)
    again = evaluate(cfg, "adprior ranking eval")
    first = trained["results"]
    for k, r in again["comparisons"].items():
        assert (
            r["delta_pct"] == first["comparisons"][k]["delta_pct"]
        )  # point estimates do not depend on resamples


def test_online_scoring_on_redis_and_outage(world, trained, redis_srv, monkeypatch):
    cfg = world["cfg"]
    now = utc_midnight(ANCHORS[-1] + timedelta(days=1)) + timedelta(hours=6)
    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    rcfg = st.StoreConfig(repo=cfg.store.repo, online="redis")
    st.apply(rcfg)
    st.materialize(rcfg, end=now)
    st.materialize(cfg.store, end=now)
    u = int(world["preds"][ANCHORS[-1]]["user_id"].iloc[0])
    advs = [int(a) for a in world["preds"][ANCHORS[-1]]["advertiser_ids"].iloc[0][:5]]
    on_redis = OnlineRanker.load(cfg.out, "vtcvr", "xgboost", "llm", rcfg)
    on_sqlite = OnlineRanker.load(cfg.out, "vtcvr", "xgboost", "llm", cfg.store)
    np.testing.assert_array_equal(on_redis.score(u, advs, now=now), on_sqlite.score(u, advs, now=now))
    redis_srv.stop()
    with pytest.raises(st.StoreUnavailable, match="is unavailable"):
        on_redis.score(u, advs, now=now)


def test_table5_lines_render_every_row_once() -> None:
    """Table 5's one renderer: baseline rows, the heuristic control's and the paired LLM-over-heuristic row,
    n/a for a metric without a value; the P(better) column only when asked."""
    c = {
        "delta_pct": {"loss": -0.1, "auc": 0.2, "pr_auc": float("nan")},
        "ci_pct": {"loss": [-0.2, 0.0], "auc": [0.1, 0.3], "pr_auc": [0.0, 0.0]},
        "p_improve": {"loss": 0.9, "auc": 0.95, "pr_auc": 0.5},
    }
    res = {
        "comparisons": {"ctcvr/xgboost": c},
        "controls": {"ctcvr/xgboost": {"heuristic": c, "llm_vs_heuristic": c}},
    }
    lines = table5_lines(res)
    assert len(lines) == 2 + 3 and all(line.count("|") == 8 for line in lines)
    assert (
        "| ctcvr | xgboost | LLM over heuristic (paired) | heuristic | -0.10% [-0.20, +0.00] |" in lines[-1]
    )
    assert lines[-1].endswith("| n/a |")
    with_p = table5_lines(res, p_better=True)
    assert with_p[2].endswith("| 0.90 / 0.95 / 0.50 |") and with_p[1].count("---") == 8
    assert len(table5_lines({"comparisons": {"ctcvr/xgboost": c}})) == 3  # no control: the LLM row only
