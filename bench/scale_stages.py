"""The five stages of the nightly scale benchmark (bench/scale.py), as each runs in its own process.

``bench/scale.py --stage NAME --spec JSON`` calls :func:`run_stage_child`, which runs one stage of
:func:`adprior.nightly.run_nightly`'s chain (simulate, compile, features, infer, materialize), or one
materialize variant (another engine / online store over the same tables, :data:`MATERIALIZE_VARIANTS`), in a
work folder, times the library call(s) inside the process (``inner_s``) and writes that, the stage's
outputs and the process' own ``ru_maxrss`` (and its reaped children's) to ``spec['result']``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
STAGES = ("simulate", "compile", "features", "infer", "materialize")
# Extra materialize stages (bench/scale.py --materialize-engines), each into a fresh online store of its own
# sibling repo that shares the offline tables: "materialize" itself runs the yaml's engine (the Arrow
# engine; Feast's local engine in reports before it) into SQLite.
MATERIALIZE_VARIANTS = {
    "local": "materialize-local",  # Feast 0.67's local engine into SQLite (the old "materialize" stage)
    "redis": "materialize-redis",  # the Arrow engine into a private redis-server
    "spark-redis": "materialize-spark-redis",  # Feast's Spark engine (local[2]) into a private redis-server
}
IMPRESSION_RATE = 0.6  # NightlyConfig.impression_rate
BUDGET_TOKENS = 256  # NightlyConfig.budget_tokens (CPU default)
SHARD_SIZE = 32  # NightlyConfig.shard_size


def du(path: Path) -> int:
    """Bytes of all files under ``path`` (0 if missing)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def anchor_day(seed: int) -> date:
    """The nightly default date: the simulated world's end - 8 days (labels exist)."""
    from world.config import WorldConfig

    return WorldConfig(out=Path("unused"), seed=seed).end_date - timedelta(days=8)


def _paths(spec: dict) -> dict[str, Path]:
    w = Path(spec["work"])
    return {"data": w / "world", "examples": w / "examples", "repo": w / "feature_repo", "infer": w / "infer"}


def _store_cfg(spec: dict) -> Any:
    from adprior.store import StoreConfig

    return StoreConfig(repo=_paths(spec)["repo"], online="sqlite", offline="file")


def stage_simulate(spec: dict) -> dict:
    """simulate: the nightly world of ``spec['users']`` users under ``<work>/world``."""
    from world.config import WorldConfig
    from world.simulate import simulate

    p = _paths(spec)
    wc = WorldConfig(
        out=p["data"],
        users=spec["users"],
        seed=spec["seed"],
        workers=spec["workers"],
        impression_rate=IMPRESSION_RATE,
    )
    t0 = time.perf_counter()
    summary = simulate(wc)
    inner = time.perf_counter() - t0
    return {
        "inner_s": inner,
        "outputs": {
            "users": spec["users"],
            "events": summary["events"],
            "raw_mib": round(du(p["data"]) / MIB, 1),
        },
    }


def stage_compile(spec: dict) -> dict:
    """compile: Spark example compilation of the anchor day (the session started and stopped here)."""
    from adprior.io import SparkConfig, get_spark
    from llm_predictor.data.compile import CompileConfig, compile_examples

    p, day = _paths(spec), date.fromisoformat(spec["day"])
    scfg = SparkConfig(master=spec["master"])
    t0 = time.perf_counter()
    spark = get_spark(scfg)
    t1 = time.perf_counter()
    comp = compile_examples(
        CompileConfig(
            data=p["data"],
            out=p["examples"],
            anchor_dates=[day],
            countries=("US",),
            spark=scfg,
            tokenizer=None,
        ),
        spark,
    )
    inner = time.perf_counter() - t1
    # Stop the session and wait for the JVM (the gateway's child) so that RUSAGE_CHILDREN counts it.
    gateway = getattr(spark.sparkContext, "_gateway", None)
    jvm = getattr(gateway, "proc", None)
    spark.stop()
    if jvm is not None:
        with contextlib.suppress(Exception):
            jvm.stdin.close()
        try:
            jvm.wait(timeout=60)
        except subprocess.TimeoutExpired:
            jvm.kill()
            jvm.wait()
    sets = comp["dates"][day.isoformat()]["sets"]
    return {
        "inner_s": inner,
        "spark_start_s": t1 - t0,
        "outputs": {
            "served_v1": sets["V1"]["users"],
            "served_v0": sets["V0"]["users"],
            "labelled_v1": sets["V1"]["labelled"],
            "examples_mib": round(du(p["examples"]) / MIB, 1),
        },
    }


def stage_features(spec: dict) -> dict:
    """features: the day's examples and daily features into a fresh Feast repo (offline parquet)."""
    from adprior import store
    from llm_predictor.data.compiled import load_examples

    p, day = _paths(spec), date.fromisoformat(spec["day"])
    cfg = _store_cfg(spec)
    store.init_repo(cfg.repo)
    t0 = time.perf_counter()
    examples = load_examples(p["examples"], day)
    counts = store.write_daily_features(cfg, p["data"], examples, day)
    inner = time.perf_counter() - t0
    return {
        "inner_s": inner,
        "outputs": {
            **counts,
            "examples_loaded": len(examples),
            "offline_mib": round(du(cfg.repo / "data" / "offline") / MIB, 1),
        },
    }


def stage_infer(spec: dict) -> dict:
    """infer: a sampled batch inference of ``spec['infer_users']`` users with the nightly's engine and model
    (InferConfig's: vLLM in the worker's process, the shipped default model)."""
    from adprior import store
    from llm_predictor.infer.plan import InferConfig
    from llm_predictor.infer.shards import run_inference

    p, day = _paths(spec), date.fromisoformat(spec["day"])
    cfg = _store_cfg(spec)
    icfg = InferConfig(
        examples=p["examples"],
        day=day,
        predictions=store.offline_dir(cfg, "llm_predictions"),
        work=p["infer"],
        data=p["data"],
        budget_tokens=BUDGET_TOKENS,
        shard_size=SHARD_SIZE,
        runner=spec["runner"],
        workers=1,
        cpus_per_worker=2.0,
        limit_users=spec["infer_users"],
    )
    t0 = time.perf_counter()
    inf = run_inference(icfg)
    inner = time.perf_counter() - t0
    keep = (
        "inferred",
        "users_run_now",
        "shards",
        "status",
        "infer_seconds",
        "users_per_second",
        "model_version",
    )
    counts = {k: v for k, v in inf.items() if isinstance(v, int) and k not in keep and k != "shards_resumed"}
    return {"inner_s": inner, "outputs": {**{k: inf.get(k) for k in keep}, **counts}}


def stage_materialize(spec: dict) -> dict:
    """materialize: ``apply`` + ``materialize`` of every view into the SQLite online store, with the yaml's
    engine (adprior.store.engine.ArrowComputeEngine; Feast's local engine before it)."""
    from adprior import store
    from llm_predictor.infer.shards import event_timestamp

    day = date.fromisoformat(spec["day"])
    cfg = _store_cfg(spec)
    t0 = time.perf_counter()
    store.apply(cfg)
    t1 = time.perf_counter()
    mat = store.materialize(cfg, end=event_timestamp(day) + timedelta(seconds=1))
    inner = time.perf_counter() - t1
    rows = {name: v.get("rows") for name, v in mat.get("views", {}).items()}
    return {
        "inner_s": inner,
        "apply_s": t1 - t0,
        "outputs": {
            "rows": sum(r for r in rows.values() if r),
            "rows_per_view": rows,
            **online_counts(cfg.repo / "data" / "online_store.db"),
        },
    }


def _sibling_repo(spec: dict, name: str) -> Path:
    """``<work>/<name>``: a fresh copy of the feature repo's definitions whose data/offline is the main
    repo's (a symlink), so a variant stage gets its own registry and online store over the same tables."""
    import shutil

    from adprior.store import PROJECT_REPO

    main, repo = _paths(spec)["repo"], Path(spec["work"]) / name
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(PROJECT_REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    (repo / "data").mkdir()
    (repo / "data" / "offline").symlink_to((main / "data" / "offline").resolve(), target_is_directory=True)
    return repo


def stage_materialize_variant(spec: dict, variant: str) -> dict:
    """materialize-<variant>: ``apply`` + ``materialize`` of every view with another engine / store
    (:data:`MATERIALIZE_VARIANTS`) in a sibling repo; Redis variants start their own redis-server (a child
    process: its memory is in the stage's tree RSS)."""
    from adprior import store
    from bench.common import redis_env
    from llm_predictor.infer.shards import event_timestamp

    day = date.fromisoformat(spec["day"])
    repo = _sibling_repo(spec, f"feature_repo_{variant}")
    online = "redis" if variant.endswith("redis") else "sqlite"
    cfg = store.StoreConfig(
        repo=repo,
        online=online,
        offline="spark" if variant.startswith("spark") else "file",
        batch_engine="local" if variant == "local" else None,
    )
    with redis_env(online == "redis") as address:
        t0 = time.perf_counter()
        store.apply(cfg)
        t1 = time.perf_counter()
        mat = store.materialize(cfg, end=event_timestamp(day) + timedelta(seconds=1))
        inner = time.perf_counter() - t1
        rows = {name: v.get("rows") for name, v in mat.get("views", {}).items()}
        counts = redis_counts(address) if address else online_counts(repo / "data" / "online_store.db")
    return {
        "inner_s": inner,
        "apply_s": t1 - t0,
        "outputs": {"rows": sum(r for r in rows.values() if r), "rows_per_view": rows, **counts},
    }


def redis_counts(address: str) -> dict[str, Any]:
    """Keys and used memory of a Redis server at ``host:port``."""
    import redis

    host, port = address.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    try:
        return {
            "redis_keys": client.dbsize(),
            "redis_mib": round(client.info("memory")["used_memory"] / MIB, 2),
        }
    finally:
        client.close()


def online_counts(db: Path) -> dict[str, Any]:
    """Rows in the SQLite online store (Feast: one per entity x feature) and its size on disk."""
    import sqlite3

    if not db.exists():
        return {"online_feature_rows": None, "online_mib": None}
    with contextlib.closing(sqlite3.connect(db)) as con:
        tables = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0].startswith("adprior_") and r[0] != "adprior_materialized"
        ]
        n = sum(con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())  # + -wal, -journal
    return {"online_feature_rows": n, "online_mib": round(size / MIB, 2)}


STAGE_FUNCS = {
    "simulate": stage_simulate,
    "compile": stage_compile,
    "features": stage_features,
    "infer": stage_infer,
    "materialize": stage_materialize,
    **{
        stage: (lambda spec, v=variant: stage_materialize_variant(spec, v))
        for variant, stage in MATERIALIZE_VARIANTS.items()
    },
}


def run_stage_child(name: str, spec: dict) -> None:
    """Entry of ``--stage``: run one stage, write its numbers and own rusage to spec['result']."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    res = STAGE_FUNCS[name](spec)
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    res["self_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    res["children_maxrss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit
    Path(spec["result"]).write_text(json.dumps(res, default=str))
