"""One-user online reads for the store benchmark: SDK and HTTP readers, their timing and their check.

A *reader* maps a user id to the features of one feature service as {name: value}: through the Feast
SDK on one ``FeatureStore`` (:func:`sdk_reader`) or through ``feast serve`` over one keep-alive HTTP
session (:func:`http_reader`). :func:`time_reads` times each read on its own after a warm-up,
:func:`latency_stats` summarises the times, and :func:`check` (:func:`check_reader`: reading the users
itself) compares what was read with what was written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def latency_stats(ms: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean / max latency (ms, 3 decimals) and reads per second at the mean."""
    a = np.asarray(ms, dtype=float)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "max_ms": round(float(a.max()), 3),
        "reads_per_s": round(1000.0 / float(a.mean()), 1),
    }


Reader = Callable[[int], dict[str, Any]]


def time_reads(read: Reader, warm: list[int], users: list[int]) -> tuple[list[float], list[dict[str, Any]]]:
    """Warm up on ``warm``, then time ``read(u)`` for each of ``users``; (ms per read, responses)."""
    for u in warm:
        read(u)
    ms, got = [], []
    for u in users:
        t0 = time.perf_counter()
        r = read(u)
        ms.append((time.perf_counter() - t0) * 1000.0)
        got.append(r)
    return ms, got


def sdk_reader(store: Any, service_name: str) -> Reader:
    """One-user lookup through the SDK: features of the feature service ``service_name`` as {name: value}."""
    service = store.get_feature_service(service_name)

    def read(u: int) -> dict[str, Any]:
        d = store.get_online_features(features=service, entity_rows=[{"user_id": u}]).to_dict()
        return {k: v[0] for k, v in d.items()}

    return read


def http_reader(session: Any, url: str, service_name: str, features: list[str] | None = None) -> Reader:
    """One-user lookup through feast serve: features of the feature service ``service_name`` as {name: value}.

    With ``features`` (``view:feature`` references) the request names them instead of the service.
    """
    what = {"features": features} if features else {"feature_service": service_name}

    def read(u: int) -> dict[str, Any]:
        resp = session.post(
            f"{url}/get-online-features", json={**what, "entities": {"user_id": [u]}}, timeout=30
        )
        resp.raise_for_status()
        return serve_features(resp.json())

    return read


def serve_features(body: dict[str, Any]) -> dict[str, Any]:
    """The first entity's features of a ``/get-online-features`` response body as {name: value}."""
    names = body["metadata"]["feature_names"]
    return {n: r["values"][0] for n, r in zip(names, body["results"], strict=True)}


def check(
    label: str,
    users: list[int],
    got: list[dict[str, Any]],
    truth: dict[int, dict[str, Any]],
    fields: tuple[str, ...],
) -> None:
    """Raise when a looked-up value differs from what was written (lists compared element-wise)."""
    bad = []
    for u, g in zip(users, got, strict=True):
        for f in fields:
            have = g.get(f)
            have = list(have) if isinstance(have, list | tuple | np.ndarray) else have
            have = (
                [x.item() if isinstance(x, np.generic) else x for x in have]
                if isinstance(have, list)
                else have
            )
            if have != truth[u][f]:
                bad.append(f"user {u} {f}: wrote {truth[u][f]!r}, read {have!r}")
    if bad:
        raise RuntimeError(
            f"{label}: {len(bad)} value(s) differ from what was written, e.g.\n" + "\n".join(bad[:5])
        )
    log.info("%s: %d users x %s match what was written", label, len(users), list(fields))


def check_reader(
    label: str, read: Reader, users: list[int], truth: dict[int, dict[str, Any]], fields: tuple[str, ...]
) -> None:
    """:func:`check` of what ``read`` returns for each of ``users``."""
    check(label, users, [read(u) for u in users], truth, fields)
