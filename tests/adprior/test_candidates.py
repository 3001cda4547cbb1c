"""adprior/store/candidates.py (and ondemand.py): the fast online frame of one user's candidate advertisers
equals Feast's ``get_online_features(service).to_df()`` column for column, for every feature service, on
SQLite and Redis, with every kind of missing row and null value (the serving world of
tests/support/candidates.py); advertiser rows kept for ``candidate_max_age_s`` are read again once stale."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pandas as pd
import pytest

from adprior import store as st
from tests.conftest import ts
from tests.support.candidates import (
    UNKNOWN_USER,
    USERS,
    candidates_of,
    serving_world_fixture,  # noqa: F401 (the serving_world fixture)
)
from tests.support.store import ADV_STATS, END, populated_repo

pytestmark = pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature")
SERVICES = (
    "ranking_baseline",
    "ranking_heuristic",
    "ranking_llm",
    "llm_predictions_online",
    "heuristic_predictions_online",
)


@pytest.mark.parametrize("online", ["sqlite", "redis"])
@pytest.mark.parametrize("service", SERVICES)
def test_frame_equals_feast_with_the_feature_service(serving_world, online, service, monkeypatch):
    cfg = serving_world.store(online, monkeypatch)
    fs = st.get_store(cfg)
    reader = st.CandidateFeatures(cfg, service, store=fs)
    svc = fs.get_feature_service(service)
    for user in [*USERS, UNKNOWN_USER]:
        ads = list(dict.fromkeys(candidates_of(user)))
        got = reader.frame(user, ads)
        rows = [{"user_id": user, "advertiser_id": a, "candidate_advertiser_id": a} for a in ads]
        want = fs.get_online_features(features=svc, entity_rows=rows).to_df()
        assert list(got.columns) == ["user_id", "advertiser_id", *reader.names]
        assert got["advertiser_id"].tolist() == ads and set(got["user_id"]) == {user}
        pd.testing.assert_frame_equal(got[reader.names], want[reader.names])
        if user == 1:  # everything known: no column all null
            assert not got[reader.names].isna().all().any()


def test_plan_reads_each_kind_of_view_once(serving_world):
    reader = st.CandidateFeatures(serving_world.stores["sqlite"], "ranking_llm")
    user_views = {v.fv.name: v for v in reader.user_views}
    assert set(user_views) == {
        "user_profile",
        "user_behavior",
        "llm_advertiser_predictions",
        "llm_user_interests",
    }
    assert {v.key for v in reader.user_views} == {"user_id"} and reader.views[0].key == "advertiser_id"
    assert [v.fv.name for v in reader.views] == ["advertiser_stats"]
    assert set(reader.views[0].features) == {
        "spend",
        "revenue",
        "bid_type",
        "category",
        "brand_group",
        "is_active",
        "name",  # an on-demand input only
    }
    assert [o.name for o in reader.odfvs] == ["behavior_candidate_features", "llm_candidate_features"]
    assert "advertiser_ids" in user_views["llm_advertiser_predictions"].features  # an on-demand input
    assert list(reader.frame(1, []).columns) == ["user_id", "advertiser_id", *reader.names]  # no rows
    only_users = st.CandidateFeatures(serving_world.stores["sqlite"], "llm_predictions_online")
    assert only_users.views == [] and only_users.odfvs == []
    assert only_users.frame(1, [101, 102])["advertiser_ids"].map(len).tolist() == [20, 20]


def test_advertiser_rows_are_kept_for_their_max_age(tmp_path):
    cfg = st.StoreConfig(repo=populated_repo(tmp_path / "feature_repo"))
    st.apply(cfg)
    st.materialize(cfg, end=END)
    fresh = st.CandidateFeatures(cfg, "ranking_llm")
    kept = st.CandidateFeatures(cfg, "ranking_llm", candidate_max_age_s=3600)
    brief = st.CandidateFeatures(cfg, "ranking_llm", candidate_max_age_s=0.5)
    ads = [505, 101]
    for reader in (fresh, kept, brief):
        assert reader.frame(1, ads)["spend"].tolist() == [3.0, 1.0]
    later = ADV_STATS.assign(
        event_timestamp=ts("2026-06-20 12:00:00"), dt=date(2026, 6, 19), spend=[7.0, 8.0, 9.0]
    )
    st.write_partition(cfg, "advertiser_stats", later, "dt=2026-06-19")
    st.materialize(cfg, end=END + timedelta(days=1))  # incremental: from END on
    assert fresh.frame(1, ads)["spend"].tolist() == [9.0, 7.0]  # read per request: the new rows
    assert kept.frame(1, [*ads, 202])["spend"].tolist() == [3.0, 1.0, 8.0]  # kept; 202 was never read
    time.sleep(0.6)
    assert brief.frame(1, ads)["spend"].tolist() == [9.0, 7.0]  # stale: read again
