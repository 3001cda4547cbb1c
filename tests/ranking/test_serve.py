"""ranking/serve.py: the online ranker's fast path (adprior.store.CandidateFeatures) scores exactly as the
reference path (``get_online_features`` with the feature service, Feast running the on-demand views) and as
the offline rows (Feast point-in-time retrieval) the models are trained on, for every feature set, both GBDT
libraries and both online stores; on the small serving world of tests/support/candidates.py (no Spark):
candidates in and out of the users' lists, an unknown advertiser, users without a prediction, with an empty
list, without behaviour, an unknown user, null advertiser and user fields."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adprior import store as st
from ranking.serve import OnlineRanker
from tests.support.candidates import (
    LIBRARIES,
    NOW,
    SETS,
    TASK,
    UNKNOWN_USER,
    USERS,
    candidates_of,
    serving_world_fixture,  # noqa: F401 (the serving_world fixture)
)

pytestmark = pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature")


def _offline_scores(model, offline: pd.DataFrame, user: int, distinct: list[int]) -> np.ndarray:
    rows = offline[offline["user_id"] == user].set_index("advertiser_id").loc[distinct].reset_index()
    return model.predict(rows, pd.Timestamp(NOW)), rows


@pytest.mark.parametrize("online", ["sqlite", "redis"])
@pytest.mark.parametrize("feature_set", SETS)
def test_fast_path_scores_equal_the_feast_path_and_offline(serving_world, online, feature_set, monkeypatch):
    cfg = serving_world.store(online, monkeypatch)
    offline = serving_world.offline[feature_set]
    for lib in LIBRARIES:
        fast = OnlineRanker.load(serving_world.models, TASK, lib, feature_set, cfg)
        feast = OnlineRanker.load(serving_world.models, TASK, lib, feature_set, cfg, fast=False)
        assert fast.fast and not feast.fast
        spec = fast.model.spec
        spread = []
        for user in [*USERS, UNKNOWN_USER]:
            ads = candidates_of(user)
            distinct = list(dict.fromkeys(ads))
            got = fast.score(user, ads, now=NOW)
            np.testing.assert_array_equal(got, feast.score(user, ads, now=NOW))
            want, rows = _offline_scores(fast.model, offline, user, distinct)
            by_adv = dict(zip(distinct, want, strict=True))
            np.testing.assert_array_equal(got, [by_adv[a] for a in ads])
            # the frames themselves: the fast one equals Feast's value for value, and the offline rows
            frame = fast.features(user, distinct)
            pd.testing.assert_frame_equal(frame[spec.features], feast.features(user, distinct)[spec.features])
            pd.testing.assert_frame_equal(spec.matrix(frame, NOW), spec.matrix(rows, NOW))
            spread.append(np.ptp(got))
        assert max(spread) > 0  # the models do separate candidates (a constant model would prove nothing)


def test_predictor_features_are_what_the_lists_say(serving_world):
    ranker = OnlineRanker.load(serving_world.models, TASK, "xgboost", "llm", serving_world.stores["sqlite"])
    ads = list(dict.fromkeys(candidates_of(1)))
    frame = ranker.features(1, ads).set_index("advertiser_id")
    assert frame.loc[120, "llm_rank"] == 1 and frame.loc[105, "llm_in_top5"] == 1
    assert frame.loc[130, "llm_rank"] == 0 and frame.loc[130, "hist_rank"] == 3
    assert frame.loc[103, "brand_in_top_brands"] == 1  # 'BRAND 3' vs the user's 'brand 3'
    assert frame.loc[999].isna()["spend"] and frame.loc[999, "llm_has_prediction"] == 1
    for user, has in ((2, 1), (3, 0), (UNKNOWN_USER, 0)):  # an empty list is a prediction; none is not
        f = ranker.features(user, ads)
        assert set(f["llm_has_prediction"]) == {has} and set(f["llm_rank"]) == {0}


def test_repeats_order_and_empty_requests(serving_world):
    ranker = OnlineRanker.load(
        serving_world.models, TASK, "lightgbm", "heuristic", serving_world.stores["sqlite"]
    )
    ads = [130, 101, 130, 999, 101]
    got = ranker.score(1, ads, now=NOW)
    assert got[0] == got[2] and got[1] == got[4] and len(got) == 5
    np.testing.assert_array_equal(ranker.score(1, ads[::-1], now=NOW), got[::-1])
    assert ranker.score(1, [], now=NOW).shape == (0,)


def test_cached_advertisers_score_the_same(serving_world):
    cfg = serving_world.stores["sqlite"]
    plain = OnlineRanker.load(serving_world.models, TASK, "xgboost", "llm", cfg, advertiser_max_age_s=0)
    cached = OnlineRanker.load(serving_world.models, TASK, "xgboost", "llm", cfg, advertiser_max_age_s=3600)
    assert OnlineRanker.load(serving_world.models, TASK, "xgboost", "llm", cfg).advertiser_max_age_s > 0
    for user in USERS:
        ads = candidates_of(user)
        np.testing.assert_array_equal(cached.score(user, ads, now=NOW), plain.score(user, ads, now=NOW))


def test_redis_outage_is_a_clear_error(serving_world, monkeypatch):
    from tests.support.redis import RedisServer

    server = RedisServer()
    server.start()
    monkeypatch.setenv("ADPRIOR_REDIS", server.address)
    cfg = st.StoreConfig(repo=serving_world.repo, online="redis")
    ranker = OnlineRanker.load(serving_world.models, TASK, "xgboost", "baseline", cfg)
    assert ranker.score(1, [101], now=NOW).shape == (1,)  # an empty Redis: nulls everywhere, still scored
    server.stop()
    with pytest.raises(st.StoreUnavailable, match="is unavailable"):
        ranker.score(1, [101], now=NOW)
