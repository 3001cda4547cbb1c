"""adprior.controls: the heuristic control written in the llm_predictions shape, on real parts: hand-built
compiled examples, the offline store's contract, Feast (file offline store, SQLite online store) through the
heuristic_* views and services, and the ``adprior heuristic`` verb.

The store is the small world of tests/support/store.py (users 1-3, advertisers 101 Nike / 202 Walmart /
505 Target, LLM predictions of 06-10 and 06-14); the examples below add anchors 06-10 and 06-14.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from adprior import store as st
from adprior.cli import main
from adprior.contracts import EXAMPLE_SCHEMA, PREDICTION_SCHEMA, conform_table
from adprior.controls import HeuristicConfig, fit_rows, heuristic_frame, write_heuristic
from llm_predictor.data.compiled import load_examples
from tests.conftest import ts
from tests.support.store import END, populated_repo

pytestmark = [
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature"),
    pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning"),
]
X = date(2026, 6, 14)
EARLY = date(2026, 6, 10)
NAMES = {101: "Nike", 202: "Walmart", 505: "Target"}
CATS = ["Home / Decor", "Apparel", "Apparel / Athletic", "Beauty", "Toys", "Garden"]


def example(uid: int, past: list[int], brands: list[str], label: int | None, label_ts: str | None) -> dict:
    return {
        "user_id": uid,
        "split": "train",
        "in_v0": False,
        "label_advertiser_id": label,
        "label_advertiser_name": NAMES.get(label) if label else None,
        "label_ts": ts(label_ts) if label_ts else None,
        "label_conversion_type": "purchase" if label else None,
        "gender": "f",
        "age": 30,
        "user_state": "core",
        "country": "US",
        "active_advertisers": [NAMES[a] for a in past],
        "active_advertiser_ids": past,
        "attributed_conversions": [],
        "matched_conversions": [],
        "onsite_searches": [],
        "offsite_searches": [],
        "offsite_urls": [],
        "top_categories": CATS if uid == 1 else [],
        "top_brands": brands,
        "n_attributed": len(past),
        "n_matched": 0,
        "last_event_ts": ts("2026-06-09 10:00:00"),
    }


def compile_dir(root: Path) -> Path:
    """A compile output folder with the examples of anchors 06-10 and 06-14."""
    rows = {
        EARLY: [
            example(1, [101], [], 505, "2026-06-12 10:00:00"),  # 101 -> 505, known by X + 1 day
            example(2, [101], [], 505, "2026-06-13 10:00:00"),
            example(5, [202], [], 101, "2026-06-16 10:00:00"),  # known only after X + 1 day: never used
            example(6, [202], [], 505, "2026-06-11 10:00:00"),
        ],
        X: [
            example(1, [505, 101], ["walmart", "Unknown Co"], 202, "2026-06-16 10:00:00"),
            example(2, [], [], None, None),
            example(4, [202], [], None, None),  # not in the LLM's partition of X
        ],
    }
    schema = pa.schema([f for f in EXAMPLE_SCHEMA if f.name != "anchor_date"])
    for day, part in rows.items():
        folder = root / "examples" / f"anchor_date={day.isoformat()}"
        folder.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(part, schema=schema), folder / "part.parquet")
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("controls")
    cfg = st.StoreConfig(repo=populated_repo(tmp / "feature_repo"))
    ex = compile_dir(tmp / "ex")
    summary = write_heuristic(HeuristicConfig(examples=ex, day=X, store=cfg))
    st.apply(cfg)
    return {"cfg": cfg, "ex": ex, "summary": summary}


def test_fit_rows_keep_only_labels_known_at_publication(world):
    fit = fit_rows(load_examples(world["ex"]), X, fit_days=56).set_index(["anchor_date", "user_id"])
    assert fit.loc[(EARLY, 1), "label_advertiser_id"] == 505
    assert pd.isna(fit.loc[(EARLY, 5), "label_advertiser_id"])  # label of 06-16: after the prediction
    assert fit.loc[(X, 1), ["label_advertiser_id", "label_advertiser_name"]].isna().all()
    assert len(fit_rows(load_examples(world["ex"]), X, fit_days=2)) == 3  # 06-10 is out of the window


def test_rows_hold_the_prediction_contract(world):
    s = world["summary"]
    assert s["users"] == 2 and s["fit_labelled"] == 3  # users of the LLM's partition of X; 3 labels known
    got = pq.read_table(s["output"])
    assert got.schema.equals(PREDICTION_SCHEMA) and Path(s["output"]).name == f"dt={X.isoformat()}.parquet"
    df = got.to_pandas().set_index("user_id")
    assert sorted(df.index) == [1, 2]
    one = df.loc[1]
    # history newest first, then the brand 'walmart' (named by a past advertiser of another user), then
    # co-occurrence (505, already listed) and popularity: the world has three advertisers
    assert list(one["advertiser_ids"]) == [505, 101, 202]
    assert list(one["advertiser_names"]) == ["Target", "Nike", "Walmart"]
    assert list(one["interests"]) == CATS[:5] and one["status"] == "short_pool"
    assert one["raw_output"] == "history=2 brands=1 cooccurrence=0 popularity=0"
    assert one["model_version"] == "heuristic-v1" and one["engine"] == "heuristic"
    assert one["event_timestamp"] == datetime(2026, 6, 15, tzinfo=UTC) and one["anchor_date"] == X
    # 505 is the most popular (3 known labels + 1 past conversion), then 101 (3 past), then 202
    assert list(df.loc[2, "advertiser_ids"]) == [505, 101, 202] and list(df.loc[2, "interests"]) == []
    assert conform_table("heuristic_predictions", got).equals(got)


def test_unknown_later_label_changes_nothing(world):
    """A label not yet known at publication must not move any list: change it, get the same rows."""
    ex = load_examples(world["ex"])
    cfg = HeuristicConfig(examples=world["ex"], day=X)
    now = datetime(2026, 6, 20, tzinfo=UTC)
    before = heuristic_frame(ex, X, cfg, now=now)
    later = ex["label_ts"] > pd.Timestamp("2026-06-15", tz="UTC")
    ex.loc[later, "label_advertiser_id"] = 202
    ex.loc[later, "label_advertiser_name"] = "Walmart"
    pd.testing.assert_frame_equal(heuristic_frame(ex, X, cfg, now=now), before)


def test_feast_views_read_the_heuristic_historical_and_online(world):
    cfg = world["cfg"]
    known = ts("2026-06-15 00:00:00")
    entity = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 3],
            "advertiser_id": [505, 202, 101, 505, 202, 101],
            "event_timestamp": [known, known, known, known - timedelta(seconds=1), known, known],
        }
    )
    entity["candidate_advertiser_id"] = entity["advertiser_id"]
    heur = st.historical_features(cfg, entity, "ranking_heuristic")
    assert heur["heuristic_rank"].tolist() == [1, 3, 2, 0, 3, 0]  # never a list from after t
    assert heur["heuristic_has_prediction"].tolist() == [1, 1, 1, 0, 1, 0]
    assert heur["heuristic_in_top5"].tolist() == [1, 1, 1, 0, 1, 0]
    assert heur["heuristic_interest_match"].tolist() == [1, 0, 1, 0, 0, 0]  # Home / Decor; Apparel
    assert not any(c.startswith("llm_") for c in heur.columns)
    llm = st.historical_features(cfg, entity, "ranking_llm")
    base = st.historical_features(cfg, entity, "ranking_baseline")
    for frame in (heur, llm):  # the same baseline columns and rows beside each predictor's features
        pd.testing.assert_frame_equal(frame[base.columns], base)

    st.materialize(cfg, end=END)
    online = {r["user_id"]: r for r in st.lookup(cfg, [1, 2, 3], "heuristic_predictions_online")}
    written = pq.read_table(world["summary"]["output"]).to_pandas().set_index("user_id")
    for u in (1, 2):
        assert online[u]["advertiser_ids"] == list(written.loc[u, "advertiser_ids"])
        assert online[u]["interests"] == list(written.loc[u, "interests"])
        assert online[u]["model_version"] == "heuristic-v1"
    assert online[3]["advertiser_ids"] is None
    assert st.lookup(cfg, [1])[0]["model_version"] == "m@2026-06-14"  # the LLM's list is untouched
    fs = st.get_store(cfg)
    rows = [{"user_id": 1, "advertiser_id": a, "candidate_advertiser_id": a} for a in (505, 202, 101)]
    got = fs.get_online_features(features=fs.get_feature_service("ranking_heuristic"), entity_rows=rows)
    assert got.to_dict()["heuristic_rank"] == [1, 3, 2]


def test_one_code_computes_both_predictors_candidate_features():
    import importlib
    import sys

    sys.path.insert(0, str(st.PROJECT_REPO))
    try:
        features = importlib.import_module("features")
    finally:
        sys.path.remove(str(st.PROJECT_REPO))
    inputs = pd.DataFrame(
        {
            "advertiser_ids": [[1, 2], [3], None],
            "interests": [["Apparel"], [], None],
            "category": ["Apparel > Athletic", "Home > Decor", None],
            "candidate_advertiser_id": [2, 1, 1],
        }
    )
    llm = features.llm_candidate_features.feature_transformation.udf(inputs)
    heur = features.heuristic_candidate_features.feature_transformation.udf(inputs)
    pd.testing.assert_frame_equal(heur.rename(columns=lambda c: c.replace("heuristic_", "llm_")), llm)
    assert llm["llm_rank"].tolist() == [2, 0, 0] and llm["llm_interest_match"].tolist() == [1, 0, 0]


def test_cli_writes_every_user_or_needs_the_llm_partition(world, tmp_path):
    repo = world["cfg"].repo
    args = ["heuristic", "--examples", str(world["ex"]), "--repo", str(repo)]
    res = CliRunner().invoke(main, [*args, "--date", X.isoformat(), "--all-users"])
    assert res.exit_code == 0, res.output
    part = st.offline_dir(world["cfg"], "heuristic_predictions") / f"dt={X.isoformat()}.parquet"
    assert sorted(pq.read_table(part).column("user_id").to_pylist()) == [1, 2, 4]
    no_llm = [
        "heuristic",
        "--examples",
        str(world["ex"]),
        "--repo",
        str(tmp_path / "repo"),
        "--date",
        "2026-06-14",
    ]
    res = CliRunner().invoke(main, no_llm)
    assert res.exit_code != 0 and "no LLM predictions" in str(res.exception)
    res = CliRunner().invoke(main, [*args, "--date", "2026-06-12", "--all-users"])
    assert res.exit_code != 0 and "no compiled examples of 2026-06-12" in str(res.exception)
