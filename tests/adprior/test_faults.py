"""Fault injection (issue "Production hardening", item 3): every fault ends in a clear error or a correct result.

Faults: SIGKILL of the inference job at several points, Redis stopped in the middle of a materialization,
corrupt parquet files (raw events, inference shard inputs and outputs), and a full disk (RLIMIT_FSIZE)
while the offline store or inference commits a file. Each case checks that nothing partial becomes
visible and that a plain rerun ends with exactly the answer of an undisturbed run.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from adprior import store as st
from llm_predictor.data.compile import CompileConfig, compile_examples
from llm_predictor.infer.plan import InferConfig
from llm_predictor.infer.shards import run_inference
from tests.conftest import compiled_world, infer_argv, infer_config, prediction_rows
from tests.support.paths import ROOT
from tests.support.store import END, PROFILE, assert_online, populated_repo

pytestmark = [
    pytest.mark.filterwarnings("ignore:On demand feature view is an experimental feature"),
    pytest.mark.filterwarnings("ignore:Downcasting object dtype arrays:FutureWarning"),
]
X = date(2026, 6, 22)
SEED = 20260622  # every random delay below comes from this seed
N_USERS, SHARD = 20, 4  # 5 shards of 4 users
ROOT = ROOT


@pytest.fixture(scope="module")
def world(tmp_path_factory, spark):
    return compiled_world(
        tmp_path_factory.mktemp("faults"), spark, [X], users=60, advertisers=40, days=45, seed=5
    )


def _cfg(world, tmp: Path, model: Path, **kw) -> InferConfig:
    return infer_config(world, tmp, model, **{"day": X, "shard_size": SHARD, "limit_users": N_USERS, **kw})


@pytest.fixture(scope="module")
def reference(world, tiny_model_dir, tmp_path_factory):
    """An undisturbed run: the answer every faulted run must end with."""
    s = run_inference(_cfg(world, tmp_path_factory.mktemp("ref"), tiny_model_dir))
    assert s["inferred"] == N_USERS and s["shards"] == N_USERS // SHARD
    return s


def _check_committed(day_dir: Path) -> int:
    """Every committed shard output is a complete parquet file holding exactly its input's users."""
    outs = sorted((day_dir / "outputs").glob("shard-*.parquet")) if (day_dir / "outputs").exists() else []
    for out in outs:
        want = pq.read_table(day_dir / "inputs" / out.name).column("user_id").to_pylist()
        assert pq.read_table(out).column("user_id").to_pylist() == want, out
    return len(outs)


# Runs the CLI with os.replace patched to SIGKILL the process just before the predictions partition is
# renamed into place: the merged table is written (and fsynced) to its temporary file, not yet visible.
_KILL_AT_MERGE = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    real = os.replace
    def replace(src, dst, *a, **k):
        if Path(dst).name.startswith("dt="):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(src, dst, *a, **k)
    os.replace = replace
    from adprior.cli import main
    main(sys.argv[1:], prog_name="adprior")
""")


def test_sigkill_at_random_points_then_resume(world, tiny_model_dir, reference, tmp_path):
    """Killed before the first shard commit, between commits and while committing the merge: the resumed
    run has every user exactly once, with the undisturbed run's answers."""
    rng = random.Random(SEED)
    args = infer_argv(world, tmp_path, tiny_model_dir, X, SHARD, "local", "--limit-users", str(N_USERS))
    day_dir = tmp_path / "work" / X.isoformat()
    out = tmp_path / "repo" / "data" / "offline" / "llm_predictions" / f"dt={X.isoformat()}.parquet"
    n_shards = reference["shards"]

    def run_and_kill(when: Callable[[], bool], max_delay: float, script: list[str] | None = None) -> int:
        cmd = [sys.executable, *(script or ["-m", "adprior"]), *args]
        proc = subprocess.Popen(
            cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.time() + 240
        while proc.poll() is None and not when() and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, max_delay))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole job at once, as on a lost machine
        err = proc.communicate()[1].decode(errors="replace")[-3000:]
        assert proc.returncode == -signal.SIGKILL, (
            f"the run ended (rc {proc.returncode}) before it was killed: {err}"
        )
        assert not out.exists() and not (day_dir / "_SUCCESS.json").exists()
        return _check_committed(day_dir)

    def n_out() -> int:
        return len(list((day_dir / "outputs").glob("shard-*.parquet"))) if day_dir.exists() else 0

    # 1. Plan committed, model loading / first shard running: no shard output yet.
    assert run_and_kill(lambda: (day_dir / "manifest.json").exists(), 0.1) == 0
    # 2. Between shard commits (the resumed run skips what is committed).
    done = run_and_kill(lambda: n_out() >= 2, 0.2)
    assert 2 <= done < n_shards
    # 3. Every shard committed, killed while the merged partition is being committed.
    assert run_and_kill(lambda: False, 0.0, ["-c", _KILL_AT_MERGE]) == n_shards
    # The resumed run: nothing left to infer, the merge is redone.
    resumed = subprocess.run(
        [sys.executable, "-m", "adprior", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    users = pq.read_table(out).column("user_id").to_pylist()
    assert len(users) == len(set(users)) == N_USERS
    assert prediction_rows(out) == prediction_rows(Path(reference["output"]))
    # The temporary file of the killed merge is hidden from parquet dataset readers (Feast's offline store).
    import pyarrow.dataset as pads

    assert pads.dataset(out.parent, format="parquet").files == [str(out)]


@pytest.mark.parametrize("engine", ["arrow", "local"])  # the yamls' Arrow engine, Feast's own local engine
def test_redis_stopped_mid_materialize_then_rerun(tmp_path, redis_srv, monkeypatch, engine):
    """Redis dies between two write batches of a materialization: a clear StoreUnavailable; after a restart
    a plain rerun fills the online store completely."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    from adprior.store import online_writers

    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    cfg = st.StoreConfig(
        repo=populated_repo(tmp_path / "feature_repo"),
        online="redis",
        batch_engine=None if engine == "arrow" else "local",
    )
    st.apply(cfg)
    calls = []
    if engine == "arrow":  # the Arrow engine writes through its own bulk writer
        real_rows = online_writers.write_redis

        def rows_then_die(store, config, fv, rows):
            calls.append(fv.name)
            if (
                len(calls) == 1 and redis_srv.proc is not None
            ):  # half of the first batch lands, then Redis stops
                half = max(1, len(rows.keys) // 2)
                part = online_writers.OnlineRows(
                    keys=rows.keys[:half],
                    values={k: v[:half] for k, v in rows.values.items()},
                    texts=None,
                    event_ts=rows.event_ts[:half],
                    created_ts=rows.created_ts[:half],
                )
                real_rows(store, config, fv, part)
                redis_srv.stop()
            return real_rows(store, config, fv, rows)

        monkeypatch.setattr(online_writers, "write_redis", rows_then_die)
    else:
        real = RedisOnlineStore.online_write_batch

        def write_then_die(self, config, table, data, progress):
            calls.append(table.name)
            if (
                len(calls) == 1 and redis_srv.proc is not None
            ):  # half of the first batch lands, then Redis stops
                real(self, config, table, data[: max(1, len(data) // 2)], progress)
                redis_srv.stop()
            return real(self, config, table, data, progress)

        monkeypatch.setattr(RedisOnlineStore, "online_write_batch", write_then_die)
    t0 = time.perf_counter()
    with pytest.raises(st.StoreUnavailable) as err:
        st.materialize(cfg, end=END, check=False)
    assert calls, "the fault was never injected: the engine wrote through another path"
    msg = str(err.value)
    assert "'redis'" in msg and redis_srv.address in msg and "repeated" in msg, msg
    assert time.perf_counter() - t0 < 60
    views = st.get_store(cfg).list_feature_views()
    assert all(fv.most_recent_end_time is None for fv in views)  # the interrupted view is not recorded

    monkeypatch.undo()
    monkeypatch.setenv("ADPRIOR_REDIS", redis_srv.address)
    redis_srv.start()  # same port, empty (no persistence)
    summary = st.materialize(cfg, end=END)
    assert summary["views"]["user_profile"]["rows"] == 3
    assert_online(cfg)


# --------------------------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("which", ["first", "middle"])  # the file Spark takes the schema from, or any other
def test_corrupt_raw_events_file_fails_naming_it(world, spark, tmp_path, which):
    data, _ = world
    raw = tmp_path / "world"
    shutil.copytree(data, raw)
    parts = sorted((raw / "events").glob("dt=*/*.parquet"))
    bad = parts[0] if which == "first" else next(p for p in parts if p.parent.name == "dt=2026-06-15")
    bad.write_bytes(b"\x00garbage, not parquet\xff" * 64)
    with pytest.raises(Exception) as err:
        compile_examples(
            CompileConfig(data=raw, out=tmp_path / "ex", anchor_dates=[X], tokenizer=None), spark=spark
        )
    msg = str(err.value)
    assert "FAILED_READ_FILE" in msg and str(bad) in msg, msg[:3000]  # Spark's own error names the file
    assert not (tmp_path / "ex" / "summary.json").exists()


def test_corrupt_shard_files_are_recomputed(world, tiny_model_dir, reference, tmp_path, caplog):
    """A committed shard output or a shard input that no longer reads (or holds other users) is redone, with a
    warning naming it; the result equals the undisturbed run."""
    ref_dir = Path(reference["output"]).parents[1] / "work" / X.isoformat()
    day_dir = tmp_path / "work" / X.isoformat()
    shutil.copytree(ref_dir, day_dir)
    (day_dir / "_SUCCESS.json").unlink()
    out1 = day_dir / "outputs" / "shard-00001.parquet"
    out1.write_bytes(out1.read_bytes()[: out1.stat().st_size // 2])  # truncated output
    shutil.copy(day_dir / "outputs" / "shard-00004.parquet", day_dir / "outputs" / "shard-00003.parquet")
    (day_dir / "inputs" / "shard-00002.parquet").write_bytes(b"garbage")  # its output is still to be made
    (day_dir / "outputs" / "shard-00002.parquet").unlink()
    (day_dir / "inputs" / "shard-00000.parquet").write_bytes(b"")  # corrupt input of a committed shard
    with caplog.at_level(logging.WARNING, logger="llm_predictor.infer"):
        s = run_inference(_cfg(world, tmp_path, tiny_model_dir))
    warned = caplog.text
    for name in ("outputs/shard-00001", "outputs/shard-00003", "inputs/shard-00002", "inputs/shard-00000"):
        assert name in warned, warned
    assert s["shards_resumed"] == 2 and s["users_run_now"] == 3 * SHARD  # shards 0 and 4 kept
    assert prediction_rows(Path(s["output"])) == prediction_rows(Path(reference["output"]))
    assert _check_committed(day_dir) == reference["shards"]


# ------------------------------------------------------------------------------------------ disk full


def _run_with_fsize_limit(code: str, limit: int, tmp: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a child whose files may not grow beyond ``limit`` bytes (writes fail with EFBIG)."""
    prelude = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        def limit_disk():
            resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
    """)
    script = tmp / "child.py"
    script.write_text(prelude + textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_disk_full_while_writing_a_partition(tmp_path):
    cfg = st.StoreConfig(repo=tmp_path / "repo")
    old = st.write_partition(cfg, "user_profile", PROFILE, "all")
    before = old.read_bytes()
    res = _run_with_fsize_limit(
        f"""
        import pandas as pd
        from adprior import store as st
        from tests.support.store import PROFILE
        big = pd.concat([PROFILE] * 3000, ignore_index=True).assign(user_id=range(9000))
        limit_disk()
        st.write_partition(st.StoreConfig(repo={str(cfg.repo)!r}), "user_profile", big, "all")
    """,
        4096,
        tmp_path,
    )
    assert res.returncode != 0
    assert "OSError" in res.stderr and "File too large" in res.stderr, res.stderr[-3000:]
    assert "table 'user_profile': cannot write partition" in res.stderr, res.stderr[-3000:]
    assert sorted(p.name for p in old.parent.iterdir()) == ["all.parquet"]  # no temporary file left behind
    assert old.read_bytes() == before  # readers still see the previous, complete partition
    big = pq.read_table(old).to_pandas()  # the rerun without the limit succeeds
    st.write_partition(cfg, "user_profile", big.assign(age=big["age"] + 1), "all")
    assert pq.read_table(old).column("age").to_pylist() == [31, 41, 51]


def test_disk_full_while_committing_a_shard(world, tiny_model_dir, reference, tmp_path):
    cfg = _cfg(world, tmp_path, tiny_model_dir)
    res = _run_with_fsize_limit(
        f"""
        import pickle
        from llm_predictor.infer.engines import model_version
        from llm_predictor.infer.plan import plan
        from llm_predictor.infer.shards import run_inference
        cfg = pickle.loads({pickle.dumps(cfg)!r})
        plan(cfg, model_version(cfg.engine.model))  # the plan fits; shard outputs do not
        limit_disk()
        run_inference(cfg)
    """,
        1024,
        tmp_path,
    )
    assert res.returncode != 0
    day_dir = cfg.day_dir()
    shard0 = day_dir / "outputs" / "shard-00000.parquet"
    assert str(shard0) in res.stderr and "File too large" in res.stderr, res.stderr[-3000:]
    assert not (day_dir / "outputs").exists() or not list((day_dir / "outputs").iterdir())  # nothing partial
    assert not (day_dir / "_SUCCESS.json").exists() and not Path(cfg.predictions).exists()
    s = run_inference(cfg)  # rerun without the limit
    assert s["shards_resumed"] == 0
    assert prediction_rows(Path(s["output"])) == prediction_rows(Path(reference["output"]))
