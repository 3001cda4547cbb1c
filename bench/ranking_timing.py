"""Measuring the online ranking path (bench/ranking.py): verification, interleaved timing, fetch breakdowns.

A :class:`Scorer` is one (online store, library, feature set, path) combination with its
``ranking.serve.OnlineRanker``; the path is how the ranker gets its features (:data:`PATHS`).
:func:`verify_scores` checks ``score()`` against ``predict(features(...))`` and every store and path
against each other; :func:`time_scorers` times every request through every scorer, interleaved (the
starting scorer rotating per request), as end to end, fetch, predict and ``FeatureSpec.array``;
:func:`fetch_breakdown` splits the Feast path's fetch into its Feast parts and :func:`fast_breakdown`
the fast path's into its reads. :func:`stats` summarises a list of times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from bench.ranking_requests import Request

log = logging.getLogger(__name__)

# How an OnlineRanker gets its features: the fast path reading advertisers per request, the fast path
# keeping advertiser rows for --advertiser-max-age seconds (OnlineRanker's default, a minute), and Feast's
# get_online_features with the feature service (the on-demand views run by Feast; the path before issue 19
# item 3).
PATHS = ("fast", "fast-cached", "feast")


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
    """One (online store, library, feature set, path) combination and its timings (ms per request)."""

    store: str  # online store: 'sqlite' | 'redis'
    library: str  # 'xgboost' | 'lightgbm'
    features: str  # feature set: 'llm' | 'baseline'
    path: str  # one of PATHS
    cfg: Any  # adprior.store.StoreConfig
    ranker: Any  # ranking.serve.OnlineRanker
    ms: dict[str, list[float]] = field(
        default_factory=lambda: {k: [] for k in ("e2e", "fetch", "predict", "array")}
    )  # ms per timed request of each part
    nulls: list[float] = field(default_factory=list)  # share of null feature cells per verified request

    @property
    def label(self) -> str:
        return f"[{self.store}/{self.library}/{self.features}/{self.path}]"


def verify_scores(scorers: list[Scorer], verify: list[Request], now: datetime) -> None:
    """Raise unless score() == predict(features()) broadcast to the ads, and every store and path agree."""
    import pandas as pd

    first: dict[tuple[str, str, int], tuple[str, np.ndarray]] = {}
    for s in scorers:
        model = s.ranker.model
        for i, r in enumerate(verify):
            frame = s.ranker.features(r.user_id, r.distinct)
            s.nulls.append(null_share(frame, model.spec.features))
            by_adv = dict(zip(r.distinct, model.predict(frame, pd.Timestamp(now)), strict=True))
            want = np.array([by_adv[a] for a in r.advertisers])
            got = s.ranker.score(r.user_id, r.advertisers, now=now)
            if not np.array_equal(got, want):
                k = int(np.flatnonzero(got != want)[0])
                raise RuntimeError(
                    f"{s.label} request {i}: score() differs from predict(features()) at "
                    f"ad {k}: {got[k]!r} != {want[k]!r}"
                )
            label, other = first.setdefault((s.library, s.features, i), (s.label, got))
            if not np.array_equal(other, got):
                raise RuntimeError(
                    f"{s.label} request {i}: scores differ from those of {label} "
                    f"(max abs diff {np.abs(other - got).max():.3g})"
                )
        if verify and min(s.nulls) >= 1.0:
            raise RuntimeError(f"{s.label}: online frames hold only nulls; was anything materialized?")
    log.info(
        "verified %d requests x %d scorers: score() == predict(features()), same across stores and paths",
        len(verify),
        len(scorers),
    )


def one_request(s: Scorer, r: Request, now: datetime, record: bool) -> None:
    """Time one request of one scorer: score() end to end, then fetch, predict and the model array
    (``FeatureSpec.array``, what predict hands the booster) separately."""
    import pandas as pd

    now_ts = pd.Timestamp(now)
    t0 = time.perf_counter()
    s.ranker.score(r.user_id, r.advertisers, now=now)
    t1 = time.perf_counter()
    frame = s.ranker.features(r.user_id, r.distinct)
    t2 = time.perf_counter()
    s.ranker.model.predict(frame, now_ts)
    t3 = time.perf_counter()
    s.ranker.model.spec.array(frame, now_ts)
    t4 = time.perf_counter()
    if record:
        for k, a, b in (("e2e", t0, t1), ("fetch", t1, t2), ("predict", t2, t3), ("array", t3, t4)):
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


def fast_breakdown(
    cfgs: dict[str, Any], fsets: list[str], warm: list[Request], sub: list[Request], candidates: int
) -> list[dict[str, Any]]:
    """The parts of the fast path's fetch per (store, feature set), interleaved over ``sub``: the user's
    views (one ``online_read`` per view), the advertisers' rows (one ``online_read``), and the
    whole frame (those reads, the on-demand views, the frame) read per request and with every
    advertiser row kept (max age one hour)."""
    from adprior.store import CandidateFeatures, get_store
    from ranking.config import SERVICES

    combos = [(online, fset) for online in cfgs for fset in fsets]
    readers = {}
    for online, fset in combos:
        fs = get_store(cfgs[online])
        readers[(online, fset)] = (
            CandidateFeatures(cfgs[online], SERVICES[fset], store=fs),
            CandidateFeatures(cfgs[online], SERVICES[fset], candidate_max_age_s=3600.0, store=fs),
        )
    parts = ("user", "advertisers", "frame", "frame_cached")
    ms: dict[tuple[str, str], dict[str, list[float]]] = {c: {k: [] for k in parts} for c in combos}

    def once(online: str, fset: str, r: Request, record: bool) -> None:
        reader, cached = readers[(online, fset)]
        t = [time.perf_counter()]
        reader.user_row(r.user_id)
        t.append(time.perf_counter())
        for view in reader.views:
            reader.read(view, r.distinct)
        t.append(time.perf_counter())
        reader.frame(r.user_id, r.distinct)
        t.append(time.perf_counter())
        cached.frame(r.user_id, r.distinct)
        t.append(time.perf_counter())
        if record:
            for j, k in enumerate(parts):
                ms[(online, fset)][k].append((t[j + 1] - t[j]) * 1000.0)

    for r in warm:
        for c in combos:
            once(*c, r, record=False)
    for i, r in enumerate(sub):
        for c in rotated(combos, i):
            once(*c, r, record=True)
    rows = []
    for (online, fset), got in ms.items():
        row: dict[str, Any] = {"store": online, "features": fset, "requests": len(sub)}
        for k, v in got.items():
            st = stats(v, candidates)
            row[f"{k}_p50_ms"], row[f"{k}_p99_ms"] = st["p50_ms"], st["p99_ms"]
        rows.append(row)
        log.info("fast path breakdown %s", row)
    return rows
