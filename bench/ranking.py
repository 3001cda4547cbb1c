"""Benchmark of online ranking: one user + N candidate ads -> Feast online features -> trained model scores.

Issue "Ranking", item 4. Times the online scoring path of :class:`ranking.serve.OnlineRanker` against a
trained run (``adprior ranking train``: ``--out`` with ``models/<task>/<library>/<set>/``) and its Feast
repo (``--repo``), for each online store (SQLite; Redis = a private ``redis-server`` on a free loopback
port with ``$ADPRIOR_REDIS`` pointing at it).

Set-up (not part of any timed request):

1. The repo's definitions (``adprior.store.init_repo(tmp, source=--repo)``) and its ``data/offline``
   folder are copied to a temporary folder, so the repo's own online store and registry are left
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
online stores are set up first and every (online store, library, feature set) combination is loaded
once (``OnlineRanker.load``); after ``--warmup`` untimed requests through every combination, each
request goes through every combination in turn (interleaved, the starting combination rotating per
request), so a change in background load hits all of them alike. Per request and combination:

* **end to end**: ``OnlineRanker.score(user, candidate_advertisers, now=now)``;
* **fetch**: ``ranking.serve.online_features(cfg, user, distinct_advertisers, service)``, as called by
  ``score``: it builds a new ``feast.FeatureStore`` (``get_store``), for Redis PINGs the server
  (``check_online``, which builds another one), then runs ``get_online_features`` (online-store read
  + the pandas on-demand views) and ``.to_df()``;
* **predict**: ``SavedModel.predict(frame, now)`` on that frame; and ``FeatureSpec.matrix(frame, now)``
  alone (library predict = the difference of the means).

end to end - (fetch + predict) is the de-duplication and broadcast in ``score``. candidates/s =
candidates per request / mean latency. The fetch is then split into its parts per (store, feature
set) on the first ``--breakdown`` requests, again interleaved: ``get_store(cfg).get_feature_service``,
``check_online`` (a no-op for SQLite), ``get_online_features`` on a new FeatureStore per request and on
one FeatureStore reused across requests (Feast caches registry objects per store), and ``.to_df()``.

Checks (any failure aborts): for the first ``--verify`` requests and every combination, ``score()``
equals ``predict(online_features(...))`` broadcast to the ads, value for value; the scores of a
request agree between the online stores; the online frames are not all null (the share of null
feature cells is reported in the JSON).

The Redis server and the temporary repo are removed on exit, errors included.

Usage (from the repository root)::

    .venv/bin/python bench/ranking.py                     # runs/ranking/{models,feature_repo}, 200 requests
    .venv/bin/python bench/ranking.py --out runs/ranking/models --repo runs/ranking/feature_repo \\
        --stores sqlite --requests 50 --json /tmp/ranking.json --md /tmp/ranking.md
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, redis_env, table_lines, write_report  # noqa: E402

log = logging.getLogger("bench.ranking")

STORES = ("sqlite", "redis")
LIBRARIES = ("xgboost", "lightgbm")
FEATURE_SETS = ("llm", "baseline")
OFFLINE_TABLES = ("user_profile", "user_behavior", "advertiser_stats", "llm_predictions")


@dataclass
class Request:
    """One scoring request: a user and the advertiser id of each candidate ad."""

    user_id: int
    advertisers: list[int]  # one per candidate ad (repeats: ads of one advertiser)

    @property
    def distinct(self) -> list[int]:
        """Distinct candidate advertisers in first-seen order (what OnlineRanker.score fetches)."""
        return list(dict.fromkeys(self.advertisers))


# ---------------------------------------------------------------------------------------------
# Inputs
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


def _column(folder: Path, columns: list[str]) -> Any:
    """``columns`` of a folder of parquet files as a pyarrow table."""
    import pyarrow.dataset as pads

    return pads.dataset(folder, format="parquet").to_table(columns=columns)


def materialize_end(offline: Path) -> datetime:
    """The latest event_timestamp of the offline feature tables + 1 s (UTC)."""
    import pyarrow.compute as pc

    latest: list[datetime] = []
    for table in OFFLINE_TABLES:
        folder = offline / table
        if folder.is_dir() and any(folder.glob("*.parquet")):
            m = pc.max(_column(folder, ["event_timestamp"])["event_timestamp"]).as_py()
            if m is not None:
                latest.append(m if m.tzinfo else m.replace(tzinfo=UTC))
    if not latest:
        raise FileNotFoundError(f"no offline feature rows under {offline}")
    return max(latest).astimezone(UTC) + timedelta(seconds=1)


def data_root(out: Path, data: Path | None) -> Path | None:
    """The run's raw-table root: ``--data``, else ``config.data`` of ``<out>/metrics.json``."""
    if data is not None:
        return data
    metrics = out / "metrics.json"
    if metrics.exists():
        value = json.loads(metrics.read_text()).get("config", {}).get("data")
        if value:
            return Path(value)
    return None


def candidate_pool(root: Path | None, offline: Path) -> tuple[np.ndarray, str]:
    """Advertiser id of every candidate ad (one entry per item) and where it came from."""
    if root is not None and (root / "items").is_dir() and any((root / "items").rglob("*.parquet")):
        ids = _column(root / "items", ["advertiser_id"])["advertiser_id"].drop_null().to_numpy()
        ids = ids.astype(np.int64)
        return ids, f"items table of {root}"
    log.warning(
        "no items table under %s; candidate ads are the advertisers of the offline advertiser_stats table",
        root,
    )
    ids = np.unique(_column(offline / "advertiser_stats", ["advertiser_id"])["advertiser_id"].to_numpy())
    return ids.astype(np.int64), "offline advertiser_stats table (one ad per advertiser)"


def make_requests(
    users: np.ndarray, ads: np.ndarray, n: int, candidates: int, rng: np.random.Generator
) -> list[Request]:
    """``n`` requests: a uniform user and ``candidates`` ads (without replacement when there are enough)."""
    replace = candidates > len(ads)
    return [
        Request(int(rng.choice(users)), [int(a) for a in rng.choice(ads, size=candidates, replace=replace)])
        for _ in range(n)
    ]


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def stats(ms: list[float], candidates: int) -> dict[str, Any]:
    """p50 / p99 / mean / max latency (ms) and candidates per second at the mean latency."""
    a = np.asarray(ms, dtype=float)
    mean = float(a.mean())
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(mean, 2),
        "max_ms": round(float(a.max()), 2),
        "candidates_per_s": round(candidates / (mean / 1000.0), 1),
    }


def timed(fn: Callable[[Request], Any], warm: list[Request], requests: list[Request]) -> list[float]:
    """Warm up on ``warm``, then the wall time (ms) of ``fn(r)`` for each of ``requests``."""
    for r in warm:
        fn(r)
    ms = []
    for r in requests:
        t0 = time.perf_counter()
        fn(r)
        ms.append((time.perf_counter() - t0) * 1000.0)
    return ms


def null_share(frame: Any, features: list[str]) -> float:
    """Share of null cells among the model's input features of an online frame."""
    return float(frame[features].isna().to_numpy().mean()) if len(frame) else 1.0


@dataclass
class Scorer:
    """One (online store, library, feature set) combination and its timings (ms per request)."""

    store: str
    library: str
    features: str
    cfg: Any  # adprior.store.StoreConfig
    ranker: Any  # ranking.serve.OnlineRanker
    ms: dict[str, list[float]] = field(
        default_factory=lambda: {k: [] for k in ("e2e", "fetch", "predict", "matrix")}
    )
    nulls: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"[{self.store}/{self.library}/{self.features}]"


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


def verify_scores(scorers: list[Scorer], verify: list[Request], now: datetime) -> None:
    """Raise unless score() == predict(online frame) broadcast to the ads, and the stores agree."""
    import pandas as pd

    from ranking.serve import online_features

    first: dict[tuple[str, str, int], tuple[str, np.ndarray]] = {}
    for s in scorers:
        model = s.ranker.model
        for i, r in enumerate(verify):
            frame = online_features(s.cfg, r.user_id, r.distinct, s.ranker.service)
            s.nulls.append(null_share(frame, model.spec.features))
            by_adv = dict(zip(r.distinct, model.predict(frame, pd.Timestamp(now)), strict=True))
            want = np.array([by_adv[a] for a in r.advertisers])
            got = s.ranker.score(r.user_id, r.advertisers, now=now)
            if not np.array_equal(got, want):
                k = int(np.flatnonzero(got != want)[0])
                raise RuntimeError(
                    f"{s.label} request {i}: score() differs from predict(online frame) at "
                    f"ad {k}: {got[k]!r} != {want[k]!r}"
                )
            store, other = first.setdefault((s.library, s.features, i), (s.store, got))
            if not np.array_equal(other, got):
                raise RuntimeError(
                    f"{s.label} request {i}: scores differ from those read from {store} "
                    f"(max abs diff {np.abs(other - got).max():.3g})"
                )
        if verify and min(s.nulls) >= 1.0:
            raise RuntimeError(f"{s.label}: online frames hold only nulls; was anything materialized?")
    log.info(
        "verified %d requests x %d scorers: score() == predict(online frame), same across stores",
        len(verify),
        len(scorers),
    )


def one_request(s: Scorer, r: Request, now: datetime, record: bool) -> None:
    """Time one request of one scorer: score() end to end, then fetch, predict and matrix separately."""
    import pandas as pd

    from ranking.serve import online_features

    now_ts = pd.Timestamp(now)
    t0 = time.perf_counter()
    s.ranker.score(r.user_id, r.advertisers, now=now)
    t1 = time.perf_counter()
    frame = online_features(s.cfg, r.user_id, r.distinct, s.ranker.service)
    t2 = time.perf_counter()
    s.ranker.model.predict(frame, now_ts)
    t3 = time.perf_counter()
    s.ranker.model.spec.matrix(frame, now_ts)
    t4 = time.perf_counter()
    if record:
        for k, a, b in (("e2e", t0, t1), ("fetch", t1, t2), ("predict", t2, t3), ("matrix", t3, t4)):
            s.ms[k].append((b - a) * 1000.0)


def rotated(items: list[Any], i: int) -> list[Any]:
    """``items`` starting at position i mod len (interleaved runs: no combination always goes first)."""
    k = i % len(items)
    return items[k:] + items[:k]


def time_scorers(scorers: list[Scorer], warm: list[Request], requests: list[Request], now: datetime) -> None:
    """Warm-up, then every request through every scorer, interleaved (load drift hits all alike)."""
    for r in warm:
        for s in scorers:
            one_request(s, r, now, record=False)
    t0 = time.perf_counter()
    for i, r in enumerate(requests):
        for s in rotated(scorers, i):
            one_request(s, r, now, record=True)
        if (i + 1) % max(1, len(requests) // 10) == 0:
            log.info("request %d / %d (%.0f s)", i + 1, len(requests), time.perf_counter() - t0)


def fetch_breakdown(
    cfgs: dict[str, Any], fsets: list[str], warm: list[Request], sub: list[Request], candidates: int
) -> list[dict[str, Any]]:
    """The parts of online_features per (store, feature set), interleaved over ``sub``."""
    from adprior.store import check_online, get_store
    from ranking.config import SERVICES

    def entity_rows(r: Request) -> list[dict[str, int]]:
        return [{"user_id": r.user_id, "advertiser_id": a, "candidate_advertiser_id": a} for a in r.distinct]

    combos = [(online, fset) for online in cfgs for fset in fsets]
    cached = {}
    for online, fset in combos:
        fs = get_store(cfgs[online])
        cached[(online, fset)] = (fs, fs.get_feature_service(SERVICES[fset]))
    ms: dict[tuple[str, str], dict[str, list[float]]] = {
        c: {k: [] for k in ("store", "check", "read_fresh", "read_cached", "to_df")} for c in combos
    }

    def once(online: str, fset: str, r: Request, record: bool) -> None:
        cfg, service = cfgs[online], SERVICES[fset]
        fs, svc = cached[(online, fset)]
        t = [time.perf_counter()]
        get_store(cfg).get_feature_service(service)
        t.append(time.perf_counter())
        check_online(cfg, "bench")
        t.append(time.perf_counter())
        fresh = get_store(cfg)
        fresh.get_online_features(features=fresh.get_feature_service(service), entity_rows=entity_rows(r))
        t.append(time.perf_counter())
        resp = fs.get_online_features(features=svc, entity_rows=entity_rows(r))
        t.append(time.perf_counter())
        resp.to_df()
        t.append(time.perf_counter())
        if record:
            for j, k in enumerate(("store", "check", "read_fresh", "read_cached", "to_df")):
                ms[(online, fset)][k].append((t[j + 1] - t[j]) * 1000.0)

    for r in warm:
        for c in combos:
            once(*c, r, record=False)
    for i, r in enumerate(sub):
        for c in rotated(combos, i):
            once(*c, r, record=True)
    rows = []
    for (online, fset), parts in ms.items():
        row: dict[str, Any] = {"store": online, "features": fset, "requests": len(sub)}
        for k, v in parts.items():
            st = stats(v, candidates)
            row[f"{k}_p50_ms"], row[f"{k}_mean_ms"] = st["p50_ms"], st["mean_ms"]
        rows.append(row)
        log.info("fetch breakdown %s", row)
    return rows


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
    scorers = [
        Scorer(o, lib, fset, cfgs[o], OnlineRanker.load(args.out, args.task, lib, fset, cfgs[o]))
        for o in args.stores
        for fset in args.features
        for lib in args.libraries
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
            "requests": len(requests),
            "candidates": n,
            "null_share": round(float(np.mean(s.nulls)), 3) if s.nulls else None,
        }
        for part, key in (("end to end", "e2e"), ("fetch", "fetch"), ("predict", "predict")):
            report["rows"].append({**base, "part": part, **stats(s.ms[key], n)})
        pm, mm = float(np.mean(s.ms["predict"])), float(np.mean(s.ms["matrix"]))
        report["predict_breakdown"].append(
            {
                "store": s.store,
                "library": s.library,
                "features": s.features,
                "rows_mean": distinct_mean,
                "columns": len(s.ranker.model.spec.columns()),
                "predict_mean_ms": round(pm, 2),
                "matrix_mean_ms": round(mm, 2),
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
        report["fetch_breakdown"] = fetch_breakdown(cfgs, args.features, warm, requests[: args.breakdown], n)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

COLUMNS = [
    ("store", "online store"),
    ("library", "library"),
    ("features", "features"),
    ("part", "part"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("mean_ms", "mean ms"),
    ("max_ms", "max ms"),
    ("candidates_per_s", "candidates/s"),
]
BREAKDOWN_COLUMNS = [
    ("store", "online store"),
    ("features", "features"),
    ("requests", "requests"),
    ("store_p50_ms", "new FeatureStore p50 ms"),
    ("store_mean_ms", "new FeatureStore mean ms"),
    ("check_p50_ms", "check_online p50 ms"),
    ("check_mean_ms", "check_online mean ms"),
    ("read_fresh_p50_ms", "read, new store p50 ms"),
    ("read_fresh_mean_ms", "read, new store mean ms"),
    ("read_cached_p50_ms", "read, store reused p50 ms"),
    ("read_cached_mean_ms", "read, store reused mean ms"),
    ("to_df_p50_ms", "to_df p50 ms"),
    ("to_df_mean_ms", "to_df mean ms"),
]
PREDICT_COLUMNS = [
    ("store", "online store"),
    ("library", "library"),
    ("features", "features"),
    ("rows_mean", "rows (mean)"),
    ("columns", "model columns"),
    ("predict_mean_ms", "predict mean ms"),
    ("matrix_mean_ms", "FeatureSpec.matrix mean ms"),
    ("model_mean_ms", "library predict mean ms"),
]
SETUP_COLUMNS = [
    ("store", "online store"),
    ("apply_s", "apply s"),
    ("materialize_s", "materialize s"),
    ("rows", "rows written"),
]


def markdown(report: dict) -> str:
    h, p, m = report["header"], report["params"], report["header"]["machine"]
    versions = ", ".join(
        f"{k} {m[k]}"
        for k in ("feast", "xgboost", "lightgbm", "pandas", "pyarrow", "redis_server", "redis_py")
        if m.get(k)
    )
    d = report["data"]
    lines = [
        "# Online ranking benchmark (Feast online features + GBDT scoring)",
        "",
        *header_lines(h),
        f"- versions: {versions}",
        f"- run: models `{p['out']}` (task {p['task']}), Feast repo `{p['repo']}` (copied to a temporary folder)",
        f"- requests: {p['requests']} timed after {p['warmup']} warm-up per (store, library, features), seed "
        f"{p['seed']}; each = 1 user (of {d['users']} with an LLM prediction) + {p['candidates']} candidate ads "
        f"from the {d['ads_source']} ({d['ads']} ads of {d['advertisers_in_pool']} advertisers); distinct advertisers per request: mean {d['distinct_advertisers_mean']} "
        f"(min {d['distinct_advertisers_min']}, max {d['distinct_advertisers_max']})",
        f"- materialize end {p['end']} (latest offline event_timestamp + 1 s); request time `now` = {p['now']}",
        "- GBDT predict threads: $OMP_NUM_THREADS = "
        + (p["omp_num_threads"] or "unset (library default: all cores)"),
        "",
        "## Latency per request",
        "",
        "All combinations interleaved request by request (rotating order). end to end = "
        "`OnlineRanker.score(user, ads, now)`; fetch = `ranking.serve.online_features(cfg, user, distinct "
        "advertisers, service)` (builds a FeatureStore per call, PINGs Redis, `get_online_features` "
        "incl. the on-demand views, `.to_df()`); predict = `SavedModel.predict(frame, now)` on that frame. "
        "candidates/s = candidates per request / mean latency. Every verified request had score() == "
        "predict(online frame), identical across stores.",
        "",
        *table_lines(COLUMNS, report["rows"]),
        "",
        "## Where the fetch goes",
        "",
        "The parts of `online_features`, one at a time (interleaved) on the first requests: new FeatureStore = "
        "`get_store(cfg).get_feature_service(service)` (yaml, registry file; what every call starts with); "
        "`check_online` (Redis: another `get_store` + a PING on a new connection; SQLite: no-op); read = "
        "`get_online_features(features=service, entity_rows=...)` (online-store read + the pandas on-demand "
        "views) on a new FeatureStore per request (as `online_features` does: Feast's per-store cache of "
        "registry objects starts cold) and on one FeatureStore reused across requests; `.to_df()` of the "
        "response.",
        "",
        *table_lines(BREAKDOWN_COLUMNS, report["fetch_breakdown"]),
        "",
        "## Where predict goes",
        "",
        "`FeatureSpec.matrix(frame, now)` alone on the same frames; library predict = predict mean - matrix "
        "mean (xgboost `predict_proba` on the pandas matrix with categoricals; lightgbm `Booster.predict`). "
        "rows = distinct candidate advertisers per request.",
        "",
        *table_lines(PREDICT_COLUMNS, report["predict_breakdown"]),
        "",
        "## Set-up",
        "",
        *table_lines(SETUP_COLUMNS, report["setup"]),
    ]
    return "\n".join(lines) + "\n"


def print_table(report: dict) -> None:
    """The latency table with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"online ranking: {report['params']['candidates']} candidates per request")
    for _, title in COLUMNS:
        table.add_column(
            title, justify="left" if title in ("online store", "library", "features", "part") else "right"
        )
    for r in report["rows"]:
        table.add_row(*("–" if r.get(k) is None else str(r[k]) for k, _ in COLUMNS))
    Console(width=160).print(table)


def _versions() -> dict[str, Any]:
    import feast
    import lightgbm
    import pandas as pd
    import pyarrow as pa
    import redis
    import xgboost

    from bench.store import redis_version

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

    from adprior.store import init_repo
    from ranking.train import model_dir

    for lib in args.libraries:
        for fset in args.features:
            if not (model_dir(args.out, args.task, lib, fset) / "spec.json").exists():
                ap.error(f"no trained model under {model_dir(args.out, args.task, lib, fset)}")
    offline = args.repo / "data" / "offline"
    if not (offline / "llm_predictions").is_dir():
        ap.error(f"{args.repo} has no offline llm_predictions table ({offline / 'llm_predictions'})")

    end = materialize_end(offline)
    users = np.unique(_column(offline / "llm_predictions", ["user_id"])["user_id"].to_numpy()).astype(
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
        init_repo(repo, source=args.repo)
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
