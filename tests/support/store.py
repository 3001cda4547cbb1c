"""The small store world shared by the store tests (test_store, test_store_spark, test_faults).

Users 1-3 (3 has neither behaviour nor predictions), advertisers 101/202/505, one behaviour snapshot
(anchor 2026-06-12, known from 06-13), predictions of 06-10 (known from 06-11) and 06-14 (known from
06-15), advertiser stats of 06-12 (known from 06-13); :func:`populated_repo` writes them into a copy of
feature_repo and :func:`assert_online` checks what the online store then returns.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from adprior import store as st
from tests.conftest import ts
from tests.support.paths import FEATURE_REPO

REPO = FEATURE_REPO
END = datetime(2026, 6, 20, tzinfo=UTC)
NOW = ts("2026-06-25 00:00:00")


def pred_rows(day: str, rows: list[tuple[int, list[int], list[str], list[str], str]]) -> pd.DataFrame:
    """Prediction rows of inference date ``day`` (PREDICTION_SCHEMA)."""
    x = date.fromisoformat(day)
    return pd.DataFrame(
        [
            {
                "user_id": uid,
                "event_timestamp": datetime.combine(x + timedelta(days=1), datetime.min.time(), tzinfo=UTC),
                "created_timestamp": NOW,
                "anchor_date": x,
                "advertiser_ids": ids,
                "advertiser_names": names,
                "raw_names": names,
                "interests": interests,
                "model_version": f"m@{day}",
                "engine": "transformers",
                "status": status,
                "n_unresolved": 0 if status == "ok" else 1,
                "raw_output": "<answer>...</answer>",
            }
            for uid, ids, names, interests, status in rows
        ]
    )


PRED_OLD = pred_rows("2026-06-10", [(1, [101, 202], ["Nike", "Walmart"], ["running shoes"], "ok")])
PRED_NEW = pred_rows(
    "2026-06-14",
    [
        (1, [202, 505, 101], ["Walmart", "Target", "Nike"], ["home decor ideas", "ATHLETIC wear"], "ok"),
        (2, [], [], [], "unparseable"),
    ],
)
BEHAVIOR = pd.DataFrame(
    {
        "user_id": [1, 2],
        "event_timestamp": [ts("2026-06-13 00:00:00")] * 2,
        "anchor_date": [date(2026, 6, 12)] * 2,
        "n_attributed": [3, 0],
        "n_matched": [2, 0],
        "n_active_advertisers": [2, 0],
        "active_advertiser_ids": [[505, 101], []],
        "active_advertisers": [["Target", "Nike"], []],
        "attributed_conversions": [["Target lamp"], []],
        "matched_conversions": [["Nike socks"], []],
        "onsite_searches": [["lamp"], []],
        "offsite_searches": [[], []],
        "offsite_urls": [["nike.com/run"], []],
        "top_categories": [["Home / Decor", "Apparel"], []],
        "top_brands": [["nike"], []],
        "last_event_ts": [ts("2026-06-12 10:00:00"), None],
    }
)
PROFILE = pd.DataFrame(
    {
        "user_id": [1, 2, 3],
        "event_timestamp": [ts("2026-01-01 00:00:00")] * 3,
        "gender": ["f", "m", "f"],
        "age": [30, 40, 50],
        "user_state": ["core", "new", "casual"],
        "country": ["US", "US", "DE"],
    }
)
ADV_STATS = pd.DataFrame(
    {
        "advertiser_id": [101, 202, 505],
        "event_timestamp": [ts("2026-06-13 00:00:00")] * 3,
        "dt": [date(2026, 6, 12)] * 3,
        "spend": [1.0, 2.0, 3.0],
        "revenue": [2.0, 3.0, 4.0],
        "bid_type": ["OCPM", "ROAS", "OCPM"],
        "name": ["Nike", "Walmart", "Target"],
        "category": ["Apparel > Athletic", "Department Stores > General", "Home > Decor"],
        "brand_group": ["Nike Inc", "Walmart", "Target"],
        "is_active": [True, True, True],
    }
)


def copy_repo(dest: Path) -> Path:
    """A copy of feature_repo's definitions (no data) at ``dest``."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return dest


def populated_repo(dest: Path) -> Path:
    """A copy of feature_repo at ``dest`` with every offline table of the small world written."""
    repo = copy_repo(dest)
    cfg = st.StoreConfig(repo=repo)
    st.write_partition(cfg, "user_profile", PROFILE, "all")
    st.write_partition(cfg, "user_behavior", BEHAVIOR, "dt=2026-06-12")
    st.write_partition(cfg, "llm_predictions", PRED_OLD, "dt=2026-06-10")
    st.write_partition(cfg, "llm_predictions", PRED_NEW, "dt=2026-06-14")
    st.write_partition(cfg, "advertiser_stats", ADV_STATS, "dt=2026-06-12")
    return repo


def expected_online(user_id: int) -> dict:
    """What llm_predictions_online must return: the user's latest prediction."""
    rows = PRED_NEW[PRED_NEW.user_id == user_id]
    if rows.empty:
        rows = PRED_OLD[PRED_OLD.user_id == user_id]
    if rows.empty:
        return {
            k: None
            for k in (
                "advertiser_ids",
                "advertiser_names",
                "interests",
                "model_version",
                "status",
                "n_unresolved",
            )
        }
    r = rows.iloc[0]
    return {
        "advertiser_ids": r.advertiser_ids,
        "advertiser_names": r.advertiser_names,
        "interests": r.interests,
        "model_version": r.model_version,
        "status": r.status,
        "n_unresolved": r.n_unresolved,
    }


def assert_online(cfg: st.StoreConfig) -> None:
    """Assert that the online store of ``cfg`` returns the small world's latest rows (materialized up to END)."""
    got = st.lookup(cfg, [1, 2, 3])
    for uid, row in zip([1, 2, 3], got, strict=True):
        assert row["user_id"] == uid
        assert {k: row[k] for k in expected_online(uid)} == expected_online(uid), uid
    beh = st.lookup(
        cfg,
        [1, 2],
        [
            "user_behavior:active_advertiser_ids",
            "user_behavior:top_categories",
            "user_behavior:last_event_ts",
            "user_behavior:n_attributed",
            "user_profile:age",
        ],
    )
    assert beh[0]["active_advertiser_ids"] == [505, 101]
    assert beh[0]["top_categories"] == ["Home / Decor", "Apparel"]
    assert beh[0]["last_event_ts"] == datetime(2026, 6, 12, 10, tzinfo=UTC)
    assert (beh[0]["n_attributed"], beh[0]["age"]) == (3, 30)
    assert beh[1]["active_advertiser_ids"] == [] and beh[1]["last_event_ts"] is None
    adv = (
        st.get_store(cfg)
        .get_online_features(
            features=["advertiser_stats:name", "advertiser_stats:is_active", "advertiser_stats:spend"],
            entity_rows=[{"advertiser_id": 505}],
        )
        .to_dict()
    )
    assert (adv["name"], adv["is_active"], adv["spend"]) == (["Target"], [True], [3.0])
