"""The nightly job end to end on a tiny world: compile -> infer -> offline write -> materialize -> lookup."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pyarrow.parquet as pq

from adprior.io import spark_running
from adprior.nightly import NightlyConfig, run_nightly
from adprior.store import StoreConfig, lookup
from llm_predictor.infer.engines import EngineConfig
from tests.support.paths import FEATURE_REPO
from world.config import WorldConfig
from world.simulate import simulate

REPO = FEATURE_REPO
X = date(2026, 6, 22)


def test_two_nights_end_to_end(tmp_path, spark, tiny_model_dir):
    repo = tmp_path / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    data = tmp_path / "world"
    simulate(WorldConfig(out=data, users=120, advertisers=100, days=60, end_date=date(2026, 6, 30), seed=5))
    cfg = NightlyConfig(
        day=X,
        workdir=tmp_path / "work",
        data=data,
        store=StoreConfig(repo=repo),
        engine=EngineConfig(model=str(tiny_model_dir), batch_size=8, max_new_tokens=100, max_names=3),
        budget_tokens=128,
        shard_size=32,
        runner="local",
        cpus_per_worker=1,
    )
    first = run_nightly(cfg)
    assert spark_running()  # the caller's (the test's) Spark session is left running
    assert first["infer"]["inferred"] == first["compile"]["V1"]["users"] > 50
    assert first["features"]["user_behavior"] == first["compile"]["V1"]["users"]
    assert first["materialize"]["views"]["llm_advertiser_predictions"]["rows"] == first["infer"]["inferred"]
    # the answer grammar: every answer well formed, with >= 1 interest of the category vocabulary
    assert first["infer"]["status"]["ok"] == first["infer"]["with_interests"] == first["infer"]["inferred"]

    pred = pq.read_table(first["infer"]["output"]).to_pandas().set_index("user_id")
    some = [int(u) for u in pred.index[:5]]
    online = {r["user_id"]: r for r in lookup(cfg.store, some)}
    for u in some:
        assert online[u]["advertiser_ids"] == [int(a) for a in pred.loc[u, "advertiser_ids"]]
        assert online[u]["advertiser_names"] == list(pred.loc[u, "advertiser_names"])
        assert online[u]["interests"] == list(pred.loc[u, "interests"])

    # The next night re-infers only users with new activity; the others keep night 1's prediction online.
    second = run_nightly(NightlyConfig(**{**cfg.__dict__, "day": X + timedelta(days=1)}))
    inf = second["infer"]
    assert inf["skipped_no_new_activity"] > 0 and inf["inferred"] == inf["selected"]
    assert inf["serving"] == inf["skipped_no_new_activity"] + inf["selected"]
    new = set(pq.read_table(inf["output"]).column("user_id").to_pylist())
    kept = [u for u in some if u not in new]
    online2 = {r["user_id"]: r for r in lookup(cfg.store, some)}
    for u in kept:
        assert online2[u]["advertiser_ids"] == online[u]["advertiser_ids"]
    # Rerunning a finished night is a no-op for inference.
    again = run_nightly(NightlyConfig(**{**cfg.__dict__, "day": X + timedelta(days=1)}))
    assert again["infer"].get("noop") is True
