"""Benchmark of online ranking: one user + N candidate ads -> Feast online features -> trained model scores.

Issue "Ranking", item 4, and issue 19, item 3 (the fast path). Times the online scoring path of
:class:`ranking.serve.OnlineRanker` against a trained run (``adprior ranking train``: ``--out`` with
``models/<task>/<library>/<set>/``) and its Feast repo (``--repo``), for each online store (SQLite; Redis
= a private ``redis-server`` on a free loopback port with ``$ADPRIOR_REDIS`` pointing at it) and each way
the ranker gets its features (``--paths``): ``fast`` (``adprior.store.CandidateFeatures``: the user's views
read once, the distinct advertisers' rows read once per request, the on-demand views run in process by
their UDFs), ``fast-cached`` (the same, advertiser rows kept for ``--advertiser-max-age`` seconds) and
``feast`` (``get_online_features`` with the feature service, Feast running the on-demand views: the path
before the fast one).

Set-up (not part of any timed request):

1. Feast definitions (``--definitions``: by default this checkout's ``feature_repo/``, so that the
   on-demand views run this checkout's code; ``run``: the copy inside ``--repo``, made when the run was)
   and the run's ``data/offline`` folder are copied to a temporary folder
   (``adprior.store.init_repo(tmp, source=...)``), so the repo's own online store and registry are left
   alone. Per online store: ``adprior.store.apply`` (each yaml has its own registry), then
   ``adprior.store.materialize(cfg, end)`` (incremental: every view from ``end - ttl``, the epoch
   for ttl 0) with ``end`` = the latest ``event_timestamp`` of the offline tables + 1 s (read with
   pyarrow). Both are timed once and reported under "Set-up".
2. Requests (seeded, the same for every store, library and feature set): a request = one user drawn
   uniformly from the users with a row in the offline ``llm_predictions`` table + ``--candidates``
   ads drawn from the raw ``items`` table of the run's world (without replacement when there are
   enough items), each ad giving its ``advertiser_id``. The world is ``--data``, else ``config.data``
   of ``<out>/metrics.json``; without an ``items`` table there, ads are advertisers of the offline
   ``advertiser_stats`` table (one ad per advertiser draw). Several ads share an advertiser;
   ``OnlineRanker.score`` de-duplicates them, so Feast is asked for one row per *distinct* candidate
   advertiser (the mean per request is reported) and the scores are broadcast back to the ads.

Timed, with ``time.perf_counter``, ``now`` = a fixed request time 1 s after the materialize end. All
online stores are set up first and every (online store, library, feature set, path) combination is
loaded once (``OnlineRanker.load``); after ``--warmup`` untimed requests through every combination, each
request goes through every combination in turn (interleaved, the starting combination rotating per
request), so a change in background load hits all of them alike. Per request and combination:

* **end to end**: ``OnlineRanker.score(user, candidate_advertisers, now=now)``;
* **fetch**: ``OnlineRanker.features(user, distinct_advertisers)``, the frame ``score`` fetches (fast:
  ``CandidateFeatures.frame``; feast: ``ranking.serve.online_features`` on the ranker's FeatureStore:
  ``get_online_features`` with the service, incl. the pandas on-demand views, and ``.to_df()``);
* **predict**: ``SavedModel.predict(frame, now)`` on that frame; and ``FeatureSpec.array(frame, now)``
  alone (library predict = the difference of the means).

end to end - (fetch + predict) is the de-duplication and broadcast in ``score``. candidates/s =
candidates per request / mean latency. The fetch is then split into its parts per (store, feature
set) on the first ``--breakdown`` requests, again interleaved: for the feast path
``get_store(cfg).get_feature_service``, ``check_online`` (a no-op for SQLite), ``get_online_features``
on a new FeatureStore per request and on one FeatureStore reused across requests (Feast caches registry
objects per store), and ``.to_df()``; for the fast path the user's read, the advertisers' read, and the
whole frame with advertisers read and kept.

Checks (any failure aborts): for the first ``--verify`` requests and every combination, ``score()``
equals ``predict(features(...))`` broadcast to the ads, value for value; the scores of a request agree
between the online stores and between the paths; the online frames are not all null (the share of null
feature cells is reported in the JSON). That the fast path equals the feast path and the offline rows
is tested in tests/ranking/test_serve.py.

The Redis server and the temporary repo are removed on exit, errors included. The requests are drawn
by ``bench/ranking_requests.py``; the verification, the interleaved timing and the fetch breakdown are in
``bench/ranking_timing.py``; the report (markdown and the rich table) in ``bench/ranking_report.py``.

Usage (from the repository root)::

    .venv/bin/python bench/ranking.py                     # runs/ranking/{models,feature_repo}, 200 requests
    .venv/bin/python bench/ranking.py --out runs/ranking/models --repo runs/ranking/feature_repo \\
        --stores sqlite --paths fast,feast --requests 50 --json /tmp/ranking.json --md /tmp/ranking.md
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, redis_env, write_report  # noqa: E402
from bench.ranking_report import markdown, print_table  # noqa: E402
from bench.ranking_requests import (  # noqa: E402
    Request,
    candidate_pool,
    data_root,
    make_requests,
    materialize_end,
    read_columns,
)
from bench.ranking_timing import (  # noqa: E402
    PATHS,
    Scorer,
    fast_breakdown,
    fetch_breakdown,
    stats,
    time_scorers,
    verify_scores,
)

log = logging.getLogger("bench.ranking")

STORES = ("sqlite", "redis")
LIBRARIES = ("xgboost", "lightgbm")
FEATURE_SETS = ("llm", "baseline")


# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------


def _csv(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    """argparse type: a comma-separated subset of ``choices``."""

    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a comma-separated subset of {','.join(choices)}"
            )
        return list(dict.fromkeys(items))

    return parse


def setup_store(online: str, repo: Path, end: datetime, report: dict) -> Any:
    """``apply`` + ``materialize(cfg, end)`` of one online store of the temporary repo; its StoreConfig."""
    from adprior.store import StoreConfig, apply, materialize

    cfg = StoreConfig(repo=repo, online=online)
    setup: dict[str, Any] = {"store": online}
    t0 = time.perf_counter()
    apply(cfg)
    setup["apply_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    res = materialize(cfg, end=end)
    setup["materialize_s"] = round(time.perf_counter() - t0, 2)
    setup["rows"] = sum(v["rows"] for v in res["views"].values())
    setup["views"] = {k: v["rows"] for k, v in res["views"].items()}
    if res["no_offline_data"]:
        setup["no_offline_data"] = res["no_offline_data"]
    report["setup"].append(setup)
    log.info(
        "[%s] apply %.1f s, materialize %d rows in %.1f s (%s)",
        online,
        setup["apply_s"],
        setup["rows"],
        setup["materialize_s"],
        setup["views"],
    )
    return cfg


def bench(
    repo: Path,
    args: argparse.Namespace,
    end: datetime,
    warm: list[Request],
    requests: list[Request],
    report: dict,
) -> None:
    """Set up every online store, verify, then time every (store, library, feature set) interleaved."""
    from ranking.serve import OnlineRanker

    cfgs = {}
    for online in args.stores:
        cfgs[online] = setup_store(online, repo, end, report)
    how = {"fast": (True, 0.0), "fast-cached": (True, args.advertiser_max_age), "feast": (False, 0.0)}
    load = lambda o, lib, fset, path: OnlineRanker.load(args.out, args.task, lib, fset, cfgs[o], *how[path])  # noqa: E731
    scorers = [
        Scorer(o, lib, fset, path, cfgs[o], load(o, lib, fset, path))
        for o in args.stores
        for fset in args.features
        for lib in args.libraries
        for path in args.paths
    ]
    now = end + timedelta(seconds=1)
    verify_scores(scorers, requests[: args.verify], now)
    time_scorers(scorers, warm, requests, now)
    n = args.candidates
    distinct_mean = round(float(np.mean([len(r.distinct) for r in requests])), 1)
    for s in scorers:
        base = {
            "store": s.store,
            "library": s.library,
            "features": s.features,
            "path": s.path,
            "requests": len(requests),
            "candidates": n,
            "null_share": round(float(np.mean(s.nulls)), 3) if s.nulls else None,
        }
        for part, key in (("end to end", "e2e"), ("fetch", "fetch"), ("predict", "predict")):
            report["rows"].append({**base, "part": part, **stats(s.ms[key], n)})
        pm, mm = float(np.mean(s.ms["predict"])), float(np.mean(s.ms["array"]))
        report["predict_breakdown"].append(
            {
                "store": s.store,
                "library": s.library,
                "features": s.features,
                "path": s.path,
                "rows_mean": distinct_mean,
                "columns": len(s.ranker.model.spec.columns()),
                "predict_mean_ms": round(pm, 2),
                "array_mean_ms": round(mm, 2),
                "model_mean_ms": round(pm - mm, 2),
            }
        )
        e, f = float(np.mean(s.ms["e2e"])), float(np.mean(s.ms["fetch"]))
        log.info(
            "%s end to end %.1f ms (fetch %.1f + predict %.1f ms), %.0f candidates/s",
            s.label,
            e,
            f,
            pm,
            n / (e / 1000.0),
        )
    if args.breakdown > 0:
        sub = requests[: args.breakdown]
        if "feast" in args.paths:
            report["fetch_breakdown"] = fetch_breakdown(cfgs, args.features, warm, sub, n)
        if {"fast", "fast-cached"} & set(args.paths):
            report["fast_breakdown"] = fast_breakdown(cfgs, args.features, warm, sub, n)


def _versions() -> dict[str, Any]:
    import feast
    import lightgbm
    import pandas as pd
    import pyarrow as pa
    import redis
    import xgboost

    from bench.feast_procs import redis_version

    return {
        "feast": feast.__version__,
        "xgboost": xgboost.__version__,
        "lightgbm": lightgbm.__version__,
        "pandas": pd.__version__,
        "pyarrow": pa.__version__,
        "redis_server": redis_version(),
        "redis_py": redis.__version__,
    }


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=Path("runs/ranking/models"), help="trained ranking run folder"
    )
    ap.add_argument("--repo", type=Path, default=Path("runs/ranking/feature_repo"), help="its Feast repo")
    ap.add_argument(
        "--definitions",
        choices=("checkout", "run"),
        default="checkout",
        help="Feast definitions to apply: this checkout's feature_repo/ (default) or the copy in --repo",
    )
    ap.add_argument("--paths", type=_csv(PATHS), default=list(PATHS), help="feature paths, comma-separated")
    ap.add_argument(
        "--advertiser-max-age",
        type=float,
        default=60.0,
        help="seconds the fast-cached path keeps an advertiser's row",
    )
    ap.add_argument(
        "--data",
        type=Path,
        default=None,
        help="raw-table root with items/ (default: config.data of <out>/metrics.json)",
    )
    ap.add_argument("--task", choices=("ctcvr", "vtcvr"), default="ctcvr")
    ap.add_argument("--libraries", type=_csv(LIBRARIES), default=list(LIBRARIES), help="comma-separated")
    ap.add_argument(
        "--features",
        type=_csv(FEATURE_SETS),
        default=list(FEATURE_SETS),
        help="feature sets, comma-separated",
    )
    ap.add_argument(
        "--stores", type=_csv(STORES), default=list(STORES), help="online stores, comma-separated"
    )
    ap.add_argument("--candidates", type=int, default=500, help="candidate ads per request")
    ap.add_argument("--requests", type=int, default=200, help="timed requests per (store, library, features)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed requests before the timed ones")
    ap.add_argument(
        "--breakdown", type=int, default=50, help="requests on which the fetch is split into parts"
    )
    ap.add_argument("--verify", type=int, default=3, help="requests checked score() == predict(frame)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OpenMP threads of xgboost / lightgbm predict (sets $OMP_NUM_THREADS before they are "
        "imported; default: the libraries' default, all cores, as the ranker runs today)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary feature repo (path is logged)")
    ap.add_argument("--json", default="bench/results/ranking.json")
    ap.add_argument("--md", default="bench/results/ranking.md")
    args = ap.parse_args(argv)
    if args.threads is not None:
        if "xgboost" in sys.modules or "lightgbm" in sys.modules:
            ap.error("--threads must be set before xgboost / lightgbm are imported")
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("feast", "adprior.store", "dask", "distributed"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    # A SIGTERM ends the run through the finally block (redis-server, temp repo).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.candidates < 1 or args.requests < 1:
        ap.error("--candidates and --requests must be positive")

    from adprior.store import PROJECT_REPO, init_repo
    from ranking.train import model_dir

    for lib in args.libraries:
        for fset in args.features:
            if not (model_dir(args.out, args.task, lib, fset) / "spec.json").exists():
                ap.error(f"no trained model under {model_dir(args.out, args.task, lib, fset)}")
    offline = args.repo / "data" / "offline"
    if not (offline / "llm_predictions").is_dir():
        ap.error(f"{args.repo} has no offline llm_predictions table ({offline / 'llm_predictions'})")

    end = materialize_end(offline)
    users = np.unique(read_columns(offline / "llm_predictions", ["user_id"])["user_id"].to_numpy()).astype(
        np.int64
    )
    ads, ads_source = candidate_pool(data_root(args.out, args.data), offline)
    rng = np.random.default_rng(args.seed)
    warm = make_requests(users, ads, args.warmup, args.candidates, rng)
    requests = make_requests(users, ads, args.requests, args.candidates, rng)
    distinct = np.array([len(r.distinct) for r in requests])

    report: dict[str, Any] = {
        "header": header(_versions()),
        "params": {
            "out": str(args.out),
            "repo": str(args.repo),
            "task": args.task,
            "libraries": args.libraries,
            "features": args.features,
            "stores": args.stores,
            "paths": args.paths,
            "definitions": args.definitions,
            "advertiser_max_age_s": args.advertiser_max_age,
            "candidates": args.candidates,
            "requests": args.requests,
            "warmup": args.warmup,
            "verify": args.verify,
            "breakdown": args.breakdown,
            "seed": args.seed,
            "threads": args.threads,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "end": end.isoformat(),
            "now": (end + timedelta(seconds=1)).isoformat(),
        },
        "data": {
            "users": len(users),
            "ads": len(ads),
            "advertisers_in_pool": len(np.unique(ads)),
            "ads_source": ads_source,
            "distinct_advertisers_mean": round(float(distinct.mean()), 1),
            "distinct_advertisers_min": int(distinct.min()),
            "distinct_advertisers_max": int(distinct.max()),
        },
        "rows": [],
        "fetch_breakdown": [],
        "fast_breakdown": [],
        "predict_breakdown": [],
        "setup": [],
    }
    log.info(
        "%d users; ads from the %s (%d ads of %d advertisers); distinct advertisers per request: mean %.1f",
        len(users),
        ads_source,
        len(ads),
        len(np.unique(ads)),
        distinct.mean(),
    )

    tmp = Path(tempfile.mkdtemp(prefix="adprior-bench-ranking-"))
    repo = tmp / "feature_repo"
    try:
        init_repo(repo, source=PROJECT_REPO if args.definitions == "checkout" else args.repo)
        shutil.copytree(offline, repo / "data" / "offline")
        with redis_env("redis" in args.stores):
            bench(repo, args, end, warm, requests, report)
    finally:
        if args.keep:
            log.info("kept %s", repo)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    write_report(report, markdown(report), args.json, args.md)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
