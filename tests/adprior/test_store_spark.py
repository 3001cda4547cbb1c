"""feature_repo on Feast's Spark offline store (real local Spark): same repo, configuration only.

One populated repo (the small world of tests/support/store.py) is applied twice: with the file (dask)
offline store (feature_store.yaml) and with the Spark offline store (feature_store.spark.yaml;
data_sources.py then defines SparkSources). Each yaml has its own registry and SQLite database, so
both live side by side over the same parquet partitions, and every result of the Spark path is
compared with the file path.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

# Imported now, outside the per-test warning filters: on import it installs its own
# simplefilter("once", RuntimeWarning), which would otherwise override the filter of pytestmark.
import feast.infra.offline_stores.contrib.spark_offline_store.spark  # noqa: F401
import pandas as pd
import pytest

from adprior import store as st
from tests.conftest import ts
from tests.support.store import END, assert_online, copy_repo, populated_repo

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature"),
    pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The spark .* is an experimental feature:RuntimeWarning"),
]

ONLINE_REFS = [
    "user_behavior:active_advertiser_ids",
    "user_behavior:top_categories",
    "user_behavior:last_event_ts",
    "user_behavior:n_attributed",
    "user_profile:age",
    "user_profile:country",
]


@pytest.fixture(scope="module")
def repos(tmp_path_factory, request) -> tuple[st.StoreConfig, st.StoreConfig]:
    """(file, spark) configs of one populated repo, both applied and materialized to SQLite up to END."""
    from pyspark.sql import SparkSession

    had_session = SparkSession.getActiveSession() is not None
    repo = populated_repo(tmp_path_factory.mktemp("fs_spark") / "feature_repo")
    file_cfg, spark_cfg = st.StoreConfig(repo=repo), st.StoreConfig(repo=repo, offline="spark")
    cwd = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("elsewhere"))  # not the repo: paths must not depend on the cwd
    request.addfinalizer(lambda: os.chdir(cwd))
    for cfg in (file_cfg, spark_cfg):
        st.apply(cfg)
        summary = st.materialize(cfg, end=END)
        assert summary["views"]["llm_advertiser_predictions"]["rows"] == 2
        assert summary["views"]["user_profile"]["start"].startswith("1970")
    yield file_cfg, spark_cfg
    os.chdir(cwd)
    if not had_session and SparkSession.getActiveSession() is not None:  # the session Feast started
        SparkSession.getActiveSession().stop()


def test_spark_apply_registers_spark_sources(repos):
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    file_cfg, spark_cfg = repos
    assert st.yaml_path(spark_cfg).name == "feature_store.spark.yaml"
    assert (
        st.yaml_path(st.StoreConfig(offline="spark", online="redis")).name == "feature_store.spark-redis.yaml"
    )
    with pytest.raises(ValueError, match="unknown offline store 'dask'"):
        st.yaml_path(st.StoreConfig(offline="dask"))
    spark_fs, file_fs = st.get_store(spark_cfg), st.get_store(file_cfg)
    assert type(spark_fs.config.offline_store).__name__ == "SparkOfflineStoreConfig"
    repo = Path(spark_cfg.repo).resolve()
    for fv in spark_fs.list_feature_views():
        src = fv.batch_source
        assert isinstance(src, SparkSource) and src.file_format == "parquet"
        table = file_fs.get_feature_view(fv.name).batch_source.path.removeprefix("data/offline/")
        assert src.path == str(repo / "data" / "offline" / table)  # absolute: Spark resolves against cwd
    assert sorted(v.name for v in spark_fs.list_on_demand_feature_views()) == [
        "behavior_candidate_features",
        "heuristic_candidate_features",
        "llm_candidate_features",
    ]
    for name in ("registry.db", "registry_spark.db", "online_store.db", "online_store_spark.db"):
        assert (repo / "data" / name).exists(), name


def test_spark_apply_without_offline_data(tmp_path):
    """Spark validates sources by reading them; apply skips that while a table has no parquet yet."""
    repo = copy_repo(tmp_path / "feature_repo")
    cfg = st.StoreConfig(repo=repo, offline="spark")
    st.apply(cfg)
    assert len(st.get_store(cfg).list_feature_views()) == 7
    assert st.materialize(cfg, end=END)["no_offline_data"] == [
        "advertiser_stats",
        "heuristic_advertiser_predictions",
        "heuristic_user_interests",
        "llm_advertiser_predictions",
        "llm_user_interests",
        "user_behavior",
        "user_profile",
    ]


def _entity() -> pd.DataFrame:
    """Point-in-time edges (a second before / at / after a prediction becomes known), one impression
    with three candidates, a row before any prediction or stats, a user without behaviour."""
    pred_ts, t = ts("2026-06-15 00:00:00"), ts("2026-06-15 12:00:00")
    rows = [
        (1, 505, pred_ts - timedelta(seconds=1)),
        (1, 505, pred_ts),
        (1, 101, pred_ts + timedelta(seconds=1)),
        (2, 202, ts("2026-06-16 00:00:00")),
        (1, 505, t),
        (1, 101, t),
        (1, 202, t),
        (1, 505, ts("2026-06-10 12:00:00")),
        (3, 101, t),
    ]
    df = pd.DataFrame(rows, columns=["user_id", "advertiser_id", "event_timestamp"])
    df["candidate_advertiser_id"] = df["advertiser_id"]
    df["row"] = range(len(df))
    return df


def _normalized(df: pd.DataFrame) -> pd.DataFrame:
    """Lists as plain lists and every missing list as None (the file store gives NaN, Spark None or NaN)."""
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = [
                None
                if v is None or (isinstance(v, float) and pd.isna(v))
                else list(v)
                if hasattr(v, "__len__") and not isinstance(v, str)
                else v
                for v in out[c]
            ]
    return out


def test_spark_historical_features_match_file_store(repos):
    file_cfg, spark_cfg = repos
    entity = _entity()
    refs = [
        "llm_advertiser_predictions:advertiser_ids",
        "llm_user_interests:interests",
        "user_behavior:active_advertiser_ids",
        "user_behavior:last_event_ts",
    ]
    for features in ("ranking_llm", refs):
        via_file = st.historical_features(file_cfg, entity, features)
        via_spark = st.historical_features(spark_cfg, entity, features)
        pd.testing.assert_frame_equal(_normalized(via_spark), _normalized(via_file))
    df = st.historical_features(spark_cfg, entity, "ranking_llm")
    assert df["row"].tolist() == list(range(9))
    # Raw Feast through Spark keeps every row too (no dask-store collapse or drop), in another order.
    fs = st.get_store(spark_cfg)
    raw = fs.get_historical_features(entity_df=entity, features=fs.get_feature_service("ranking_llm")).to_df()
    raw = raw.sort_values("row").reset_index(drop=True)
    for col in ("llm_rank", "hist_rank", "llm_interest_match", "spend", "age"):
        pd.testing.assert_series_equal(raw[col], df[col], check_dtype=False)
    assert df["llm_rank"].tolist() == [0, 2, 3, 0, 2, 3, 1, 0, 0]  # never a prediction from after t
    assert df["llm_has_prediction"].tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert df["llm_interest_match"].tolist()[:4] == [0, 1, 1, 0]
    assert df["hist_rank"].tolist() == [1, 1, 2, 0, 1, 2, 0, 0, 0]
    assert df["brand_in_top_brands"].tolist()[:4] == [0, 0, 1, 0]
    assert df["spend"].tolist()[:7] == [3.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0] and pd.isna(df["spend"].iloc[7])
    assert df["age"].tolist() == [30, 30, 30, 40, 30, 30, 30, 30, 50]


def test_spark_materialize_then_lookup_matches_file_store(repos):
    file_cfg, spark_cfg = repos
    assert_online(spark_cfg)
    users = [1, 2, 3]
    assert st.lookup(spark_cfg, users) == st.lookup(file_cfg, users)
    assert st.lookup(spark_cfg, users, ONLINE_REFS) == st.lookup(file_cfg, users, ONLINE_REFS)
    adv = [
        "advertiser_stats:name",
        "advertiser_stats:spend",
        "advertiser_stats:is_active",
        "advertiser_stats:category",
    ]
    rows = [{"advertiser_id": a} for a in (101, 202, 505, 999)]
    got = [st.get_store(c).get_online_features(features=adv, entity_rows=rows).to_dict() for c in repos]
    assert got[0] == got[1] and got[1]["spend"] == [1.0, 2.0, 3.0, None]
    again = st.materialize(spark_cfg, end=END)  # incremental: the Spark registry recorded its intervals
    assert again["views"] == {} and len(again["skipped"]) == 5
