"""adprior.store + feature_repo on real parts: parquet offline store, SQLite, a real redis-server, the feast CLI.

The small world of tests/support/store.py: users 1-3 (3 has neither behaviour nor predictions),
advertisers 101/202/505, behaviour of 06-12, predictions of 06-10 and 06-14, advertiser stats of 06-12.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest

from adprior import store as st
from tests.conftest import ts, write_raw
from tests.support.store import BEHAVIOR, END, PRED_NEW, PROFILE, assert_online, copy_repo, populated_repo

pytestmark = [
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature"),
    pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning"),
]


@pytest.fixture(scope="module")
def sqlite_cfg(tmp_path_factory) -> st.StoreConfig:
    """A populated copy of feature_repo, applied and materialized to SQLite up to END."""
    cfg = st.StoreConfig(repo=populated_repo(tmp_path_factory.mktemp("fs") / "feature_repo"))
    st.apply(cfg)
    summary = st.materialize(cfg, end=END)
    assert summary["views"]["llm_advertiser_predictions"]["rows"] == 2
    assert summary["views"]["user_profile"]["start"].startswith("1970")  # not Feast's now - ttl
    return cfg


def test_write_partition_validates_and_replaces(tmp_path):
    cfg = st.StoreConfig(repo=tmp_path)
    bad_age = PROFILE.assign(age=[30, "forty", 50])
    with pytest.raises(ValueError, match=r"'user_profile', column 'age', row 1"):
        st.write_partition(cfg, "user_profile", bad_age, "all")
    with pytest.raises(ValueError, match=r"'user_profile', column 'user_id', row 2: null"):
        st.write_partition(cfg, "user_profile", PROFILE.assign(user_id=[1, 2, None]), "all")
    with pytest.raises(ValueError, match=r"'user_profile', column 'country': missing"):
        st.write_partition(cfg, "user_profile", PROFILE.drop(columns=["country"]), "all")
    with pytest.raises(ValueError, match=r"'user_profile': unexpected columns \['email'\]"):
        st.write_partition(cfg, "user_profile", PROFILE.assign(email="x"), "all")
    with pytest.raises(ValueError, match=r"'llm_predictions', column 'advertiser_ids', row 1: null inside"):
        st.write_partition(cfg, "llm_predictions", PRED_NEW.assign(advertiser_ids=[[1], [2, None]]), "dt=x")
    with pytest.raises(ValueError, match=r"'user_behavior', columns \['user_id', 'event_timestamp'\], row 1"):
        st.write_partition(cfg, "user_behavior", BEHAVIOR.assign(user_id=[7, 7]), "dt=2026-06-12")
    assert not st.offline_dir(cfg, "user_profile").exists() or not any(
        st.offline_dir(cfg, "user_profile").iterdir()
    )

    path = st.write_partition(cfg, "user_profile", PROFILE, "all")
    again = st.write_partition(cfg, "user_profile", PROFILE.assign(age=[31, 41, 51]), "all")
    assert path == again and sorted(p.name for p in path.parent.iterdir()) == ["all.parquet"]
    assert pd.read_parquet(path)["age"].tolist() == [31, 41, 51]


def test_write_daily_features(tmp_path):
    raw = write_raw(
        tmp_path / "raw",
        {
            "users": [
                {
                    "user_id": u,
                    "age": 20 + u,
                    "gender": "f",
                    "user_state": "core",
                    "country": "US",
                    "signup_date": date(2026, 1, u),
                }
                for u in (1, 2)
            ],
            "advertisers": [
                {
                    "advertiser_id": 101,
                    "name": "Nike",
                    "aliases": [],
                    "domain": "nike.com",
                    "brand_group": "Nike Inc",
                    "category": "Apparel > Athletic",
                    "is_active": True,
                }
            ],
            "advertiser_daily": [
                {
                    "dt": date(2026, 6, d),
                    "advertiser_id": 101,
                    "spend": 1.0,
                    "revenue": 2.0,
                    "bid_type": "OCPM",
                }
                for d in (11, 12, 13)
            ],
        },
    )
    examples = BEHAVIOR.drop(columns=["event_timestamp", "n_active_advertisers"]).assign(split="train")
    cfg = st.StoreConfig(repo=tmp_path / "repo")
    counts = st.write_daily_features(cfg, raw, examples, date(2026, 6, 12))
    assert counts == {
        "user_profile": 2,
        "user_behavior": 2,
        "advertiser_stats": 2,
        "advertiser_stats_days": 2,
    }
    stats = pd.read_parquet(st.offline_dir(cfg, "advertiser_stats") / "dt=2026-06-12.parquet")
    assert stats["event_timestamp"].tolist() == [ts("2026-06-13 00:00:00")]
    assert stats[["name", "category", "is_active"]].iloc[0].tolist() == ["Nike", "Apparel > Athletic", True]
    beh = pd.read_parquet(st.offline_dir(cfg, "user_behavior") / "dt=2026-06-12.parquet")
    assert beh["n_active_advertisers"].tolist() == [2, 0]
    assert beh["event_timestamp"].tolist() == [ts("2026-06-13 00:00:00")] * 2
    prof = pd.read_parquet(st.offline_dir(cfg, "user_profile") / "all.parquet")
    assert prof["event_timestamp"].tolist() == [ts("2026-01-01 00:00:00"), ts("2026-01-02 00:00:00")]
    again = st.write_daily_features(cfg, raw, examples, date(2026, 6, 13))
    assert (
        again["advertiser_stats"] == 1 and again["user_behavior"] == 0
    )  # only the new day; no examples of 06-13


def test_sqlite_online_readback(sqlite_cfg):
    assert_online(sqlite_cfg)
    again = st.materialize(sqlite_cfg, end=END)  # nothing new: every view is up to date
    assert again["views"] == {} and len(again["skipped"]) == 5


def test_historical_point_in_time_and_odfvs(sqlite_cfg):
    """Raw Feast with the ranking_llm service (rows chosen to avoid the dask-store bugs, see README)."""
    pred_ts = ts("2026-06-15 00:00:00")  # PRED_NEW becomes known
    entity = pd.DataFrame(
        {
            "row": [0, 1, 2, 3],
            "user_id": [1, 1, 1, 2],
            "advertiser_id": [505, 505, 101, 202],
            "event_timestamp": [
                pred_ts - timedelta(seconds=1),
                pred_ts,
                pred_ts + timedelta(seconds=1),
                ts("2026-06-16 00:00:00"),
            ],
        }
    )
    entity["candidate_advertiser_id"] = entity["advertiser_id"]
    fs = st.get_store(sqlite_cfg)
    raw = (
        fs.get_historical_features(
            entity_df=entity,
            features=["llm_advertiser_predictions:advertiser_ids", "llm_user_interests:interests"],
        )
        .to_df()
        .sort_values("row")
    )
    ids = [list(v) for v in raw["advertiser_ids"]]
    assert ids == [[101, 202], [202, 505, 101], [202, 505, 101], []]  # never a prediction from after t
    assert list(raw["interests"].iloc[0]) == ["running shoes"]

    df = fs.get_historical_features(entity_df=entity, features=fs.get_feature_service("ranking_llm")).to_df()
    df = df.sort_values("row").reset_index(drop=True)
    expected = {
        "llm_rank": [0, 2, 3, 0],
        "llm_in_top5": [0, 1, 1, 0],
        "llm_in_top20": [0, 1, 1, 0],
        "llm_has_prediction": [1, 1, 1, 1],  # user 2's prediction is an empty list: still a prediction
        "llm_interest_match": [0, 1, 1, 0],  # "home decor ideas" ~ Home > Decor; "ATHLETIC wear" ~ Athletic
        "hist_rank": [1, 1, 2, 0],
        "hist_in_active": [1, 1, 1, 0],
        "category_in_top_categories": [1, 1, 1, 0],  # top "Home / Decor" and "Apparel" (an ancestor)
        "brand_in_top_brands": [0, 0, 1, 0],  # "Nike" ~ "nike"
    }
    assert {k: df[k].tolist() for k in expected} == expected
    assert df["spend"].tolist() == [3.0, 3.0, 1.0, 2.0] and df["age"].tolist() == [30, 30, 30, 40]

    # The store's helper gives the same values, in entity order, without the ODFV input columns.
    mine = st.historical_features(sqlite_cfg, entity, "ranking_llm")
    assert mine["row"].tolist() == [0, 1, 2, 3]
    assert {k: mine[k].tolist() for k in expected} == expected
    assert "advertiser_ids" not in mine.columns and "top_brands" not in mine.columns

    # Online, a user without behaviour or predictions scores zeros, no error.
    online = fs.get_online_features(
        features=fs.get_feature_service("ranking_llm"),
        entity_rows=[
            {"user_id": 3, "advertiser_id": 101, "candidate_advertiser_id": 101},
            {"user_id": 1, "advertiser_id": 101, "candidate_advertiser_id": 101},
        ],
    ).to_dict()
    assert online["llm_has_prediction"] == [0, 1] and online["llm_rank"] == [0, 3]
    assert online["hist_rank"] == [0, 2] and online["brand_in_top_brands"] == [0, 1]


def test_historical_features_keeps_every_row(sqlite_cfg):
    """Rows Feast's file store would collapse (one impression, three candidates) or drop (before any data)."""
    t = ts("2026-06-15 12:00:00")
    entity = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 3],
            "advertiser_id": [505, 101, 202, 505, 101],
            "event_timestamp": [t, t, t, ts("2026-06-10 12:00:00"), t],
            "label": [1, 0, 0, 1, 0],
        }
    )
    entity["candidate_advertiser_id"] = entity["advertiser_id"]
    df = st.historical_features(sqlite_cfg, entity, "ranking_llm")
    assert len(df) == 5 and df["label"].tolist() == [1, 0, 0, 1, 0]
    assert df["llm_rank"].tolist() == [2, 3, 1, 0, 0]
    assert df["llm_has_prediction"].tolist() == [1, 1, 1, 0, 0]  # 06-10 12:00: no prediction known yet
    assert df["hist_rank"].tolist() == [1, 2, 0, 0, 0]
    assert df["spend"].tolist()[:3] == [3.0, 1.0, 2.0] and pd.isna(df["spend"].iloc[3])  # stats from 06-13
    assert pd.isna(df["n_attributed"].iloc[3]) and df["age"].tolist() == [30, 30, 30, 30, 50]


def test_redis_online_readback(tmp_path, redis_srv, monkeypatch):
    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    cfg = st.StoreConfig(repo=populated_repo(tmp_path / "feature_repo"), online="redis")
    st.apply(cfg)
    st.materialize(cfg, end=END)
    assert_online(cfg)
    assert not (cfg.repo / "data" / "registry.db").exists()  # the Redis yaml has its own registry


def test_redis_outage_then_rerun(tmp_path, redis_srv, monkeypatch):
    monkeypatch.setenv("ADPRIOR_REDIS", f"{redis_srv.address},password=s3cret-pw")
    cfg = st.StoreConfig(repo=populated_repo(tmp_path / "feature_repo"), online="redis")
    redis_srv.stop()
    st.apply(cfg)  # registry only: creating Redis "tables" needs no connection
    for check in (True, False):  # our PING first (fails fast), or Feast's own write failing
        with pytest.raises(st.StoreUnavailable) as err:
            st.materialize(cfg, end=END, check=check)
        msg = str(err.value)
        assert (
            "'redis'" in msg and redis_srv.address in msg and "repeated" in msg and "ConnectionError" in msg
        )
        assert "s3cret" not in msg
    views = st.get_store(cfg).list_feature_views()
    assert all(fv.most_recent_end_time is None for fv in views)  # Feast recorded nothing as done
    with pytest.raises(st.StoreUnavailable, match="is unavailable"):
        st.lookup(cfg, [1])

    redis_srv.start()  # same port, empty (no persistence); this server has no password
    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    summary = st.materialize(cfg, end=END)
    assert summary["views"]["user_profile"]["rows"] == 3
    assert_online(cfg)


def test_feast_cli_apply_both_yamls(tmp_path, redis_srv, monkeypatch):
    """`feast apply` from the CLI on a fresh copy (no data/ yet), default and Redis yaml, run concurrently."""
    repo = copy_repo(tmp_path / "feature_repo")
    feast = Path(sys.executable).parent / "feast"
    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            [str(feast), "-c", str(repo), *args, "apply"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in ([], ["-f", str(repo / "feature_store.redis.yaml")])
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    assert "Created sqlite table adprior_llm_advertiser_predictions" in outs[0]
    for online in ("sqlite", "redis"):
        cfg = st.StoreConfig(repo=repo, online=online)
        fs = st.get_store(cfg)
        assert sorted(s.name for s in fs.list_feature_services()) == [
            "heuristic_predictions_online",
            "llm_predictions_online",
            "ranking_baseline",
            "ranking_heuristic",
            "ranking_llm",
        ]
        assert sorted(v.name for v in fs.list_on_demand_feature_views()) == [
            "behavior_candidate_features",
            "heuristic_candidate_features",
            "llm_candidate_features",
        ]
    assert not list(repo.rglob("__pycache__"))


def test_online_store_that_lost_its_data_is_written_again(tmp_path, redis_srv, monkeypatch):
    # Redis restarted without persistence: the registry still says "materialized up to END".
    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    cfg = st.StoreConfig(repo=populated_repo(tmp_path / "feature_repo"), online="redis")
    st.apply(cfg)
    first = st.materialize(cfg, end=END)
    assert first["rewritten_lost"] == [] and len(first["views"]) == 5
    redis_srv.stop()
    redis_srv.start()  # same port, empty
    again = st.materialize(cfg, end=END)  # incremental: would skip every view without the markers
    assert again["rewritten_lost"] == sorted(first["views"]) and again["skipped"] == []
    assert_online(cfg)
    assert st.materialize(cfg, end=END)["skipped"] == sorted(first["views"])  # markers back: no-op

    # SQLite: the online database file deleted.
    scfg = st.StoreConfig(repo=cfg.repo)
    st.apply(scfg)
    st.materialize(scfg, end=END)
    (cfg.repo / "data" / "online_store.db").unlink()
    redo = st.materialize(scfg, end=END)
    assert redo["rewritten_lost"] == sorted(first["views"])
    assert_online(scfg)

    # ... and deleted again, then `apply` first, as the nightly does: apply leaves a database file without
    # the views' tables (the registry's infra is unchanged), which materialize must still recreate.
    (cfg.repo / "data" / "online_store.db").unlink()
    st.apply(scfg)
    redo = st.materialize(scfg, end=END)
    assert redo["rewritten_lost"] == sorted(first["views"])
    assert_online(scfg)


def test_interest_match_reads_taxonomy_interests_as_paths():
    """Grammar interests are category paths: they match the candidate's category or its descendants only;
    free-text interests keep the word-overlap reading."""
    import importlib
    import sys

    sys.path.insert(0, str(st.PROJECT_REPO))
    try:
        features = importlib.import_module("features")
    finally:
        sys.path.remove(str(st.PROJECT_REPO))
    udf = features.llm_candidate_features.feature_transformation.udf
    inputs = pd.DataFrame(
        {
            "advertiser_ids": [[1]] * 5,
            "candidate_advertiser_id": [1] * 5,
            "interests": [
                ["Apparel / Athletic"],
                ["Apparel / Athletic"],
                ["Apparel"],
                ["Home / Decor"],
                ["athletic wear"],
            ],
            "category": [
                "Apparel > Athletic",
                "Apparel > Casual",
                "Apparel > Casual",
                "Apparel > Athletic",
                "Apparel > Athletic",
            ],
        }
    )
    assert udf(inputs)["llm_interest_match"].tolist() == [1, 0, 1, 0, 1]


@pytest.mark.slow
def test_wheel_ships_the_feature_repo(tmp_path):
    """A non-editable install finds the Feast definitions: the wheel holds feature_repo/ as the package
    adprior_feature_repo (never its data/), and PROJECT_REPO / init_repo use it outside a checkout."""
    import json
    import shutil
    import zipfile

    from tests.support.paths import FEATURE_REPO, ROOT

    assert st.PROJECT_REPO == FEATURE_REPO  # in the checkout: the top-level folder itself
    # Built from a copy: a build writes build/ and *.egg-info beside its sources.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    packages = ("adprior", "world", "llm_predictor", "ranking", "retrieval")
    for name in (*packages, "feature_repo"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "feature_repo" / "data").mkdir(exist_ok=True)
    (src / "feature_repo" / "data" / "registry.db").write_bytes(b"local state")
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", "dist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("adprior-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    definitions = sorted(
        p.name
        for p in FEATURE_REPO.iterdir()
        if p.is_file() and (p.suffix in (".py", ".yaml") or p.name in (".feastignore", "README.md"))
    )
    assert {"features.py", "feature_store.yaml", "feature_store.redis.yaml", ".feastignore"} <= set(
        definitions
    )
    assert {f"adprior_feature_repo/{n}" for n in definitions} <= names
    assert not [n for n in names if n.startswith("adprior_feature_repo/data/")]
    for init in sorted(p for pkg in packages for p in (ROOT / pkg).rglob("__init__.py")):
        assert init.relative_to(ROOT).as_posix() in names  # every package of the checkout ships

    site = tmp_path / "site"  # what pip install puts in site-packages
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import json, sys; from pathlib import Path; import adprior; "
        "from adprior.store.repo import PROJECT_REPO, init_repo; init_repo(Path(sys.argv[1])); "
        "copied = sorted(p.name for p in Path(sys.argv[1]).iterdir()); "
        "print(json.dumps([adprior.__file__, str(PROJECT_REPO), copied]))"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "copy")],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    module, repo, copied = json.loads(res.stdout.strip().splitlines()[-1])
    assert module == str(site / "adprior" / "__init__.py")
    assert repo == str(site / "adprior_feature_repo")
    assert copied == sorted(n for n in definitions if n != "__init__.py")


def test_feast_prints_only_at_verbose(tmp_path, capsys, caplog):
    """Feast's print output ("Created ...", "Materializing ...") goes to the DEBUG log at default verbosity
    and to stdout when the 'feast' logger says INFO (`adprior -v`)."""
    import logging

    cfg = st.StoreConfig(repo=populated_repo(tmp_path / "feature_repo"))
    feast_logger = logging.getLogger("feast")
    before = feast_logger.level
    try:
        feast_logger.setLevel(logging.WARNING)
        with caplog.at_level(logging.DEBUG, logger="adprior.store"):
            st.apply(cfg)
            st.materialize(cfg, end=END)
        quiet = capsys.readouterr().out
        assert "Created" not in quiet and "Materializing" not in quiet, quiet
        logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
        assert "Created feature view user_profile" in logged and "Materializing" in logged, logged[:2000]

        feast_logger.setLevel(logging.INFO)
        loud = st.StoreConfig(repo=populated_repo(tmp_path / "again"))
        st.apply(loud)
        assert "Created feature view user_profile" in capsys.readouterr().out
    finally:
        feast_logger.setLevel(before)
