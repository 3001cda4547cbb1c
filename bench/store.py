"""Benchmark of the Feast stores (feature_repo/): materialize rows/s and one-user online lookup latency.

Issue "Nightly batch inference into Feast", item 6. ``feature_repo/`` (without its ``data/``) is copied
into a temporary folder and a synthetic, schema-valid ``llm_predictions`` partition is written there
with ``adprior.store.write_partition`` (partition ``dt=<date>``): N users, each with 20 distinct
advertiser ids and names out of a pool of 300, 5 free-text interests, a model version, a parse status
and a raw completion of realistic length; every row has event_timestamp = date + 1 day 00:00 UTC. Only
the ``llm_predictions_online`` service is exercised, so the other offline tables stay empty (their
views are left out of materialization).

For each online store (SQLite; Redis = a private ``redis-server`` on a free loopback port with
``$ADPRIOR_REDIS`` pointing at it):

1. ``adprior.store.apply`` (timed, reported).
2. ``adprior.store.materialize(cfg, end, start)`` over a window holding every row, into an emptied online
   store, once per engine of ``--engines`` (each after an untimed materialization of an empty window:
   imports, Spark's session):

   * ``local``: Feast 0.67's local engine (``StoreConfig(batch_engine="local")``; what the reports' "SDK"
     row measured before the yamls named an engine, e.g. 1,211 rows/s to SQLite at 20k users);
   * ``arrow``: the yaml's engine, ``adprior.store.engine.ArrowComputeEngine`` (Arrow read, bulk writes);
   * ``spark``: the Spark yaml of the store (``feature_store.spark.yaml`` / ``feature_store.spark-redis.yaml``:
     Feast's Spark offline store and Spark compute engine, ``local[2]``; applied first, timed apart).

   A *row* is one (user, feature view) pair written to the online store: users x 2 views
   (``llm_advertiser_predictions`` and ``llm_user_interests``, both read from the ``llm_predictions``
   table). In Redis both views of a user land in one hash key, so keys = users. After every engine the
   ``--verify`` users' predictions are read back and compared.
3. The online store is emptied again and the same window is written by the CLI in a subprocess,
   ``feast -c REPO -f <yaml> materialize START END -v <view> ...`` (the yaml's engine: Arrow; before, Feast's
   local engine); its wall time includes the CLI's start-up (imports, registry load), reported as
   overhead against the SDK time of the same engine. The start-up of a bare ``feast version`` is
   measured once as a reference.
4. One-user online lookups: a warm-up of ``--warmup`` reads, then ``--reads`` sequential reads of random
   users (seeded; the same users for every path), each timed on its own:
   * SDK: ``store.get_online_features(features=<service>, entity_rows=[{"user_id": u}]).to_dict()``
     with the ``FeatureStore`` and the service object built once;
   * ``feast serve``: ``feast -c REPO -f <yaml> serve`` (gunicorn, 1 worker, ``--no-access-log``,
     ``--max-requests 0``: the default 1,000 would restart the only worker in the middle of the run) on a
     free loopback port, POST ``/get-online-features`` with ``{"feature_service": ..., "entities":
     {"user_id": [u]}}`` over one keep-alive ``requests`` session, response parsed with ``.json()``.
   Every response of the timed reads, and the full prediction of ``--verify`` users, is compared with
   what was written; any difference aborts the benchmark.

The Redis server, ``feast serve`` and the temporary repo are removed on exit, errors included. The
synthetic predictions come from ``bench/synthetic_predictions.py``, the feast processes (CLI, ``feast
serve``, emptying an online store) from ``bench/feast_procs.py``, the timed and checked one-user reads
from ``bench/online_reads.py``, the markdown report from ``bench/store_report.py``.

Usage (from the repository root)::

    .venv/bin/python bench/store.py                                   # 20,000 users, 1,000 reads
    .venv/bin/python bench/store.py --users 2000 --reads 200 --json /tmp/store.json --md /tmp/store.md
    .venv/bin/python bench/store.py --users 1000000 --engines arrow spark --no-serve --reads 100 \
        --json bench/results/store_1m.json --md bench/results/store_1m.md   # materialize at scale
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, redis_env, write_report  # noqa: E402
from bench.feast_procs import clear_online, feast_server, redis_version, run_cli  # noqa: E402
from bench.online_reads import check, check_reader, http_reader, latency_stats, sdk_reader, time_reads  # noqa: E402
from bench.store_report import markdown  # noqa: E402
from bench.synthetic_predictions import prediction_frame  # noqa: E402

log = logging.getLogger("bench.store")

SERVICE = "llm_predictions_online"
VIEWS = ("llm_advertiser_predictions", "llm_user_interests")  # the views SERVICE reads (one source table)
VERIFIED = ("advertiser_ids", "advertiser_names", "interests", "model_version")  # checked on the verify users
STORES = ("sqlite", "redis")
# SDK materialize paths: Feast's local engine (the "SDK" row of reports before the Arrow engine), the yaml's
# engine (adprior.store.engine.ArrowComputeEngine), Feast's Spark engine through the Spark yamls.
ENGINES = {"local": "Feast local", "arrow": "Arrow (yaml)", "spark": "Feast Spark, local[2]"}


def _chars(values: list[str]) -> int:
    return sum(len(v) for v in values)


def store_versions() -> dict[str, Any]:
    import feast
    import pandas as pd
    import pyarrow as pa
    import redis
    import requests

    info: dict[str, Any] = {
        "feast": feast.__version__,
        "redis_server": redis_version(),
        "redis_py": redis.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "requests": requests.__version__,
    }
    for mod in ("gunicorn", "uvicorn", "hiredis"):
        with contextlib.suppress(ImportError, AttributeError):
            info[mod] = __import__(mod).__version__
    return info


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def materialize_row(
    engine: str,
    repo: Path,
    online: str,
    window: tuple[datetime, datetime],
    truth: dict[int, dict[str, Any]],
    verify: list[int],
    setup: dict[str, Any],
) -> dict[str, Any]:
    """One timed SDK materialize of the whole window into an emptied online store with ``engine``.

    ``local``: ``StoreConfig(batch_engine="local")`` (Feast's local engine over the file offline store);
    ``arrow``: the yaml's engine; ``spark``: the Spark yaml of ``online`` (Spark offline store + Feast's
    Spark engine; applied here, its session started by an untimed warm-up). Every engine first
    materializes an empty window (untimed: imports, session start-up).
    """
    from adprior.store import StoreConfig, apply, get_store, materialize

    start, end = window
    cfg = StoreConfig(
        repo=repo,
        online=online,
        offline="spark" if engine == "spark" else "file",
        batch_engine="local" if engine == "local" else None,
    )
    if engine == "spark":
        t0 = time.perf_counter()
        apply(cfg)
        setup["spark_apply_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    materialize(cfg, end=start - timedelta(seconds=1), start=start - timedelta(days=1))  # empty window
    setup[f"warmup_{engine}_s"] = round(time.perf_counter() - t0, 2)
    clear_online(cfg)
    t0 = time.perf_counter()
    res = materialize(cfg, end=end, start=start)
    wall = time.perf_counter() - t0
    rows = sum(v["rows"] for v in res["views"].values())
    if sorted(res["views"]) != sorted(VIEWS) or any(v["rows"] != len(truth) for v in res["views"].values()):
        raise RuntimeError(
            f"[{online}/{engine}] materialize wrote {res['views']}, expected {len(truth)} rows in {VIEWS}"
        )
    read = sdk_reader(get_store(cfg), SERVICE)
    check_reader(f"[{online}] SDK after the {engine} engine's materialize", read, verify, truth, VERIFIED)
    return {
        "store": online,
        "path": "SDK",
        "engine": ENGINES[engine],
        "rows": rows,
        "keys": len(truth),
        "seconds": res["seconds"],
        "rows_per_s": round(rows / res["seconds"], 1),
        "wall_s": round(wall, 2),
    }


def bench_store(
    online: str,
    repo: Path,
    args: argparse.Namespace,
    window: tuple[datetime, datetime],
    truth: dict[int, dict[str, Any]],
    warm: list[int],
    reads: list[int],
    verify: list[int],
    report: dict,
) -> None:
    """Apply, materialize (SDK, CLI) and time lookups (SDK, serve) for one online store."""
    import requests

    from adprior.store import StoreConfig, apply, get_store, yaml_path

    cfg = StoreConfig(repo=repo, online=online)
    start, end = window
    setup: dict[str, Any] = {"store": online}
    t0 = time.perf_counter()
    apply(cfg)
    setup["apply_s"] = round(time.perf_counter() - t0, 2)
    log.info("[%s] apply %.1f s", online, setup["apply_s"])

    # Materialize through the SDK with each engine, then (after emptying the store) through the CLI.
    rows, sdk_s = len(VIEWS) * len(truth), None
    for engine in args.engines:
        row = materialize_row(engine, repo, online, window, truth, verify, setup)
        report["materialize"].append(row)
        sdk_s = row["seconds"] if engine == "arrow" else sdk_s
        log.info(
            "[%s] SDK materialize, %s: %d rows in %.2f s (%.0f rows/s; wall %.2f s)",
            online,
            row["engine"],
            rows,
            row["seconds"],
            row["rows_per_s"],
            row["wall_s"],
        )

    clear_online(cfg)
    views = [a for v in VIEWS for a in ("-v", v)]
    cli_s = run_cli(
        [
            "-c",
            str(repo),
            "-f",
            str(yaml_path(cfg)),
            "materialize",
            start.strftime("%Y-%m-%dT%H:%M:%S"),
            end.strftime("%Y-%m-%dT%H:%M:%S"),
            *views,
        ]
    )
    report["materialize"].append(
        {
            "store": online,
            "path": "CLI",
            "engine": ENGINES["arrow"],
            "rows": rows,
            "keys": len(truth),
            "seconds": round(cli_s, 2),
            "rows_per_s": round(rows / cli_s, 1),
            "wall_s": round(cli_s, 2),
            "overhead_s": None if sdk_s is None else round(cli_s - sdk_s, 2),
        }
    )
    log.info("[%s] CLI materialize: %d rows in %.2f s (%.0f rows/s)", online, rows, cli_s, rows / cli_s)

    def add_lookups(path: str, ms: list[float]) -> None:
        report["lookups"].append({"store": online, "path": path, "reads": len(ms), **latency_stats(ms)})

    # Lookups through the SDK (the store as the CLI left it).
    fields = ("advertiser_ids",)
    store = get_store(cfg)
    read = sdk_reader(store, SERVICE)
    check_reader(f"[{online}] SDK after CLI materialize", read, verify, truth, VERIFIED)
    ms, got = time_reads(read, warm, reads)
    check(f"[{online}] SDK timed reads", reads, got, truth, fields)
    add_lookups("SDK", ms)
    log.info("[%s] SDK lookups: %s", online, report["lookups"][-1])

    # Lookups through feast serve.
    if not args.no_serve:
        t0 = time.perf_counter()
        with feast_server(repo, yaml_path(cfg)) as url, requests.Session() as session:
            setup["serve_startup_s"] = round(time.perf_counter() - t0, 2)
            read = http_reader(session, url, SERVICE)
            check_reader(f"[{online}] feast serve", read, verify, truth, VERIFIED)
            ms, got = time_reads(read, warm, reads)
            # The HTTP floor: GET /health on the same session (a cached registry call, no online read).
            floor, _ = time_reads(
                lambda _u: {"status": session.get(f"{url}/health", timeout=30).status_code}, warm, reads
            )
        check(f"[{online}] feast serve timed reads", reads, got, truth, fields)
        add_lookups("feast serve", ms)
        add_lookups("feast serve GET /health (HTTP floor)", floor)
        log.info("[%s] serve lookups: %s", online, report["lookups"][-1])
    report["setup"].append(setup)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=20_000, help="users in the llm_predictions partition")
    ap.add_argument("--reads", type=int, default=1_000, help="timed one-user reads per (store, path)")
    ap.add_argument("--warmup", type=int, default=50, help="untimed reads before the timed ones")
    ap.add_argument("--verify", type=int, default=5, help="users whose full prediction is checked per path")
    ap.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    ap.add_argument(
        "--engines",
        nargs="+",
        choices=list(ENGINES),
        default=list(ENGINES),
        help="SDK materialize engines to time (local = Feast's, slow at scale; spark starts a JVM)",
    )
    ap.add_argument("--no-serve", action="store_true", help="skip the feast serve lookups")
    ap.add_argument("--date", default="2026-06-22", help="anchor (inference) date; event time = date + 1 day")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary feature repo (path is logged)")
    ap.add_argument("--json", default="bench/results/store.json")
    ap.add_argument("--md", default="bench/results/store.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("feast", "adprior.store", "dask", "distributed"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # A SIGTERM ends the run through the finally blocks (redis-server, feast serve, temp repo).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from adprior.store import offline_dir, write_partition

    day = date.fromisoformat(args.date)
    event = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    window = (event - timedelta(days=1), event + timedelta(days=1))
    rng = np.random.default_rng(args.seed)
    user_ids = np.sort(rng.choice(np.arange(1, 50 * args.users + 1), size=args.users, replace=False))
    warm = [int(u) for u in rng.choice(user_ids, size=args.warmup)]
    reads = [int(u) for u in rng.choice(user_ids, size=args.reads)]
    verify = [int(u) for u in rng.choice(user_ids, size=min(args.verify, args.users), replace=False)]

    report: dict[str, Any] = {
        "header": header(store_versions()),
        "params": {
            "users": args.users,
            "reads": args.reads,
            "warmup": args.warmup,
            "verify": args.verify,
            "stores": args.stores,
            "serve": not args.no_serve,
            "engines": args.engines,
            "date": args.date,
            "seed": args.seed,
            "start": window[0].isoformat(),
            "end": window[1].isoformat(),
            "serve_options": "--workers 1 --no-access-log --max-requests 0",
        },
        "materialize": [],
        "lookups": [],
        "setup": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="adprior-bench-store-"))
    repo = tmp / "feature_repo"
    try:
        shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
        from adprior.store import StoreConfig

        t0 = time.perf_counter()
        df = prediction_frame(user_ids, day, args.seed)
        path = write_partition(StoreConfig(repo=repo), "llm_predictions", df, f"dt={day.isoformat()}")
        truth = {
            int(r["user_id"]): r
            for r in df[
                ["user_id", "advertiser_ids", "advertiser_names", "interests", "model_version"]
            ].to_dict("records")
        }
        report["data"] = {
            "rows": len(df),
            "parquet_mib": round(path.stat().st_size / 2**20, 2),
            "build_s": round(time.perf_counter() - t0, 2),
            "mean_chars_per_user": {
                "advertiser_names": round(float(df["advertiser_names"].map(_chars).mean()), 1),
                "interests": round(float(df["interests"].map(_chars).mean()), 1),
                "raw_output": round(float(df["raw_output"].str.len().mean()), 1),
            },
        }
        del df
        log.info(
            "wrote %d predictions (%s MiB) to %s in %.1f s",
            args.users,
            report["data"]["parquet_mib"],
            offline_dir(StoreConfig(repo=repo), "llm_predictions"),
            report["data"]["build_s"],
        )

        report["cli_startup_s"] = round(run_cli(["version"]), 2)
        log.info("feast version (CLI start-up): %.1f s", report["cli_startup_s"])
        for online in args.stores:
            with redis_env(online == "redis"):
                bench_store(online, repo, args, window, truth, warm, reads, verify, report)
    finally:
        if args.keep:
            log.info("kept %s", repo)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    write_report(report, markdown(report, SERVICE, VIEWS), args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
