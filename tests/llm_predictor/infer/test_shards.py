"""Nightly batch inference: shards committed atomically, SIGKILL + resume == uninterrupted, incremental users."""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from adprior.contracts import PREDICTION_SCHEMA
from llm_predictor.data.compiled import load_examples
from llm_predictor.infer.plan import InferConfig
from llm_predictor.infer.shards import event_timestamp, run_inference
from tests.conftest import compiled_world, infer_argv, infer_config, prediction_rows

X = date(2026, 6, 22)
X2 = X + timedelta(days=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    return compiled_world(
        tmp_path_factory.mktemp("infer"), spark, [X, X2], users=160, advertisers=120, days=60, seed=11
    )


def _cfg(world, tmp_path: Path, model: Path, **kw) -> InferConfig:
    return infer_config(world, tmp_path, model, **{"day": X, **kw})


def test_local_run_writes_predictions_and_rerun_is_noop(world, tmp_path, tiny_model_dir, caplog):
    cfg = _cfg(world, tmp_path, tiny_model_dir)
    with caplog.at_level(logging.INFO, logger="llm_predictor.infer.shards"):
        s = run_inference(cfg)
    n = len(load_examples(world[1], X))
    # no terminal under pytest: one progress line per committed shard, the last one at n/n
    progress = [r.getMessage() for r in caplog.records if "users/s, ETA" in r.getMessage()]
    assert len(progress) == s["shards"]
    assert f"{n}/{n} users (100 %)" in progress[-1] and "ETA 0m00s" in progress[-1]
    assert s["serving"] == n and s["inferred"] == n and s["skipped_no_new_activity"] == 0
    table = pq.read_table(s["output"])
    assert table.schema.equals(PREDICTION_SCHEMA)
    assert table.column("user_id").to_pylist() == sorted(table.column("user_id").to_pylist())
    assert set(table.column("event_timestamp").to_pylist()) == {event_timestamp(X)}
    assert all(st in ("ok", "partial", "unparseable") for st in table.column("status").to_pylist())
    assert sum(st == "ok" for st in table.column("status").to_pylist()) == n  # constrained: always valid XML
    assert all(len(ids) <= 4 for ids in table.column("advertiser_ids").to_pylist())
    assert s["prompt_token_fraction_computed"] < 1.0  # the shared prefix was reused
    assert len(s["threads"]) == 1 and 1 <= s["threads"][0] <= (os.cpu_count() or 1)  # the worker's choice
    again = run_inference(cfg)
    assert again["noop"] is True
    # A finished date whose partition was lost or damaged since is rebuilt from the committed shards
    # (no model call), never reported as a no-op over missing predictions.
    before = prediction_rows(s["output"])
    out = Path(s["output"])
    out.unlink()
    rebuilt = run_inference(cfg)
    assert rebuilt.get("noop") is None and rebuilt["users_run_now"] == 0 and prediction_rows(out) == before
    assert rebuilt["threads"] == []  # no worker ran
    out.write_bytes(out.read_bytes()[:-100])  # truncated: the footer is gone
    assert run_inference(cfg)["users_run_now"] == 0 and prediction_rows(out) == before
    assert run_inference(cfg)["noop"] is True
    # A changed plan over existing outputs is refused unless forced.
    cfg2 = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, max_new_tokens=100))
    (Path(cfg.day_dir()) / "_SUCCESS.json").unlink()
    with pytest.raises(RuntimeError, match="different plan"):
        run_inference(cfg2)
    assert run_inference(dataclasses.replace(cfg2, force=True))["inferred"] == n


def test_incremental_skips_users_without_new_activity(world, tmp_path, tiny_model_dir):
    _, ex = world
    first = run_inference(_cfg(world, tmp_path, tiny_model_dir))
    second = run_inference(_cfg(world, tmp_path, tiny_model_dir, day=X2))
    df1, df2 = load_examples(ex, X), load_examples(ex, X2)
    seen = set(df1["user_id"])
    cut = event_timestamp(X)
    expected = {
        int(u)
        for u, t in zip(df2["user_id"], df2["last_event_ts"], strict=True)
        if u not in seen or t.to_pydatetime() >= cut
    }
    got = set(pq.read_table(second["output"]).column("user_id").to_pylist())
    assert got == expected
    assert second["skipped_no_new_activity"] == len(df2) - len(expected) > 0
    # Skipped users keep their previous prediction (and its timestamp) in the first partition.
    kept = set(df2["user_id"]) - expected
    assert kept <= set(pq.read_table(first["output"]).column("user_id").to_pylist())


def test_sigkill_midway_then_resume_equals_uninterrupted(world, tmp_path, tiny_model_dir):
    ref = run_inference(_cfg(world, tmp_path / "ref", tiny_model_dir, shard_size=8))
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "adprior", *infer_argv(world, tmp_path, tiny_model_dir, X, 8, "ray")]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    outputs = work / X.isoformat() / "outputs"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if outputs.exists() and len(list(outputs.glob("shard-*.parquet"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, (
        f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    )
    os.killpg(proc.pid, signal.SIGKILL)  # the job and its Ray processes die at once, as on a lost machine
    proc.wait()
    n_done = len(list(outputs.glob("shard-*.parquet")))
    assert 2 <= n_done < ref["shards"]
    assert not (work / X.isoformat() / "_SUCCESS.json").exists()
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    shown = resumed.stdout + resumed.stderr  # default verbosity: none of Ray Data's one-time lines
    assert "Execution plan of Dataset" not in shown and "Progress bars disabled" not in shown, shown[-3000:]
    out = tmp_path / "repo" / "data" / "offline" / "llm_predictions" / f"dt={X.isoformat()}.parquet"
    assert prediction_rows(out) == prediction_rows(Path(ref["output"]))
    users = pq.read_table(out).column("user_id").to_pylist()
    assert len(users) == len(set(users)) == ref["inferred"]


def test_ray_no_progress_timeout_and_worker_priority(world, tmp_path, tiny_model_dir):
    """A set ``no_progress_timeout_s`` is Ray Data's stall guard: far below one shard's time, the run fails with
    Ray's no-progress error (so the setting reaches Ray); the default (None) turns the guard off and the same
    plan resumes and finishes with the uninterrupted run's predictions. The private Ray's workers are not niced."""
    ray = pytest.importorskip("ray")
    ref = run_inference(_cfg(world, tmp_path / "ref", tiny_model_dir, shard_size=8))
    cfg = _cfg(
        world, tmp_path / "ray", tiny_model_dir, shard_size=8, runner="ray", no_progress_timeout_s=0.001
    )
    try:
        with pytest.raises(Exception, match="no progress"):
            run_inference(cfg)
        assert ray.data.DataContext.get_current().execution_no_progress_timeout_s == 0.001
        done = run_inference(dataclasses.replace(cfg, no_progress_timeout_s=None))
        assert ray.data.DataContext.get_current().execution_no_progress_timeout_s == -1
        # The private Ray's workers run at the driver's priority, not Ray's default niceness 15.
        assert ray.get(ray.remote(lambda: os.nice(0)).remote()) == os.nice(0)
    finally:
        ray.shutdown()
    assert prediction_rows(Path(done["output"])) == prediction_rows(Path(ref["output"]))
    assert done["threads"] and all(t >= 1 for t in done["threads"])  # reported back from the Ray actors
