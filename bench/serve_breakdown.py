"""Where a ``feast serve`` POST /get-online-features spends its time, step by step (issue 19, item 3).

Follows Feast 0.67's handler (feast/feature_server.py ``get_online_features``, ``_get_features``;
feast/feature_server_utils.py ``convert_response_to_dict``) for one-user reads of ``llm_predictions_online``,
one random user per read (seeded), the steps of ``STEPS`` back to back per read, after a warm-up: parse =
``GetOnlineFeaturesRequest.model_validate(json.loads(body))``; (a) ``get_feature_service(name, allow_cache=True)``;
(b) ``get_online_features(features=<service>, entity_rows={"user_id": [u]})``, no conversion; (b async) its
async twin, the handler's read when the store reads asynchronously (Redis: no threadpool hop); (c)
``convert_response_to_dict(response.proto)``; (d) ``JSONResponse(content=dict)``; (e) ``await
run_in_threadpool(<empty function>)``, one hop (the handler makes one for (a), (c) and a sync read); (f)
``get_app(store)`` (lifespan run, registry TTL 60 s as ``feast serve``) called as a bare ASGI app: POST (with
(a), the read and (c) also timed inside the handler), POST naming the ``view:feature`` refs instead of the
service, GET /health; (g) ``feast serve`` (bench/feast_procs.feast_server: 1 worker, no access log,
max-requests off) over loopback, the steps taking turns in going first: POST via a keep-alive ``requests``
session (as bench/store.py) and via ``http.client``, POST naming the refs, GET /health, and POST to a second
server run with ``PYTHONOPTIMIZE=1`` (typeguard's ``@typechecked`` on Feast's classes is then a no-op). The
loop is uvloop, as in uvicorn's worker. Repo: a temporary copy of feature_repo/ with a synthetic
``llm_predictions`` partition, applied and materialized; Redis: a private redis-server on a free loopback
port. Every (f) and (g) response is checked against the written advertiser ids.

Usage (from the repository root, on an idle machine)::

    .venv/bin/python bench/serve_breakdown.py                        # 2,000 users, 1,000 reads, both stores
    .venv/bin/python bench/serve_breakdown.py --stores redis --users 200 --reads 50 --json /tmp/b.json --md /tmp/b.md
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import inspect
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, redis_env, table_lines, write_report  # noqa: E402
from bench.feast_procs import feast_server  # noqa: E402
from bench.online_reads import check, http_reader, latency_stats, serve_features  # noqa: E402
from bench.store import SERVICE, store_versions  # noqa: E402
from bench.synthetic_predictions import prediction_frame  # noqa: E402

log = logging.getLogger("bench.serve_breakdown")

STEPS = {  # key: label in the table, in table order
    "parse": "parse: body -> GetOnlineFeaturesRequest",
    "a": "(a) get_feature_service(allow_cache=True)",
    "b": "(b) get_online_features, sync, no conversion",
    "b_async": "(b async) get_online_features_async",
    "c": "(c) convert_response_to_dict(response.proto)",
    "d": "(d) JSONResponse(content=dict)",
    "e": "(e) run_in_threadpool hop, empty function",
    "f": "(f) app in-process: POST",
    "f_refs": "(f) app in-process: POST naming the features",
    "f_health": "(f) app in-process: GET /health",
    "f_a": "(f) inside the handler: (a)",
    "f_b": "(f) inside the handler: (b)",
    "f_b_async": "(f) inside the handler: (b async)",
    "f_c": "(f) inside the handler: (c)",
    "g": "(g) feast serve: POST, requests",
    "g_raw": "(g) feast serve: POST, http.client",
    "g_refs": "(g) feast serve: POST naming the features, requests",
    "g_opt": "(g) feast serve, PYTHONOPTIMIZE=1: POST, requests",
    "g_health": "(g) feast serve: GET /health, requests",
}
FIELDS = ("advertiser_ids",)


Step = Callable[[int, dict[str, Any]], Any]  # (user, this read's results so far) -> result or awaitable


async def rounds(
    steps: dict[str, Step], warm: list[int], users: list[int], rotate: bool
) -> tuple[dict, dict]:
    """Per user, every step back to back (in turn first when ``rotate``), awaited when it returns an awaitable.

    Untimed on ``warm``, then timed on each of ``users``: ({step: [ms]}, {step: [result]}).
    """
    ms: dict[str, list[float]] = {k: [] for k in steps}
    got: dict[str, list[Any]] = {k: [] for k in steps}
    for n, u in enumerate(warm + users):
        keys, done = list(steps), {}
        for k in keys[n % len(keys) :] + keys[: n % len(keys)] if rotate else keys:
            t0 = time.perf_counter()
            r = steps[k](u, done)
            done[k] = await r if inspect.isawaitable(r) else r
            if n >= len(warm):
                ms[k].append((time.perf_counter() - t0) * 1000.0)
                got[k].append(done[k])
    return ms, got


async def asgi(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI ``app`` itself (no client, no socket): (status, body)."""
    scope = dict(type="http", asgi={"version": "3.0"}, http_version="1.1", method=method, scheme="http")
    scope |= dict(path=path, raw_path=path.encode(), query_string=b"", root_path="", server=("127.0.0.1", 80))
    scope["client"] = ("127.0.0.1", 50000)
    scope["headers"] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    pending, status, chunks = [{"type": "http.request", "body": body, "more_body": False}], [0], []

    async def receive() -> dict[str, Any]:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            status[0] = msg["status"]
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))

    await app(scope, receive, send)
    return status[0], b"".join(chunks)


def _body(u: int, refs: list[str] | None = None) -> bytes:
    what = {"features": refs} if refs else {"feature_service": SERVICE}
    return json.dumps({**what, "entities": {"user_id": [u]}}).encode()


def timed(fn: Callable[..., Any], sink: dict[str, float], key: str) -> Callable[..., Any]:
    """``fn`` setting ``sink[key]`` to its duration (ms) on every call (once awaited, when it returns a coroutine)."""

    async def finish(t0: float, coro: Any) -> Any:
        r = await coro
        sink[key] = (time.perf_counter() - t0) * 1000.0
        return r

    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        r = fn(*args, **kwargs)
        if inspect.isawaitable(r):
            return finish(t0, r)
        sink[key] = (time.perf_counter() - t0) * 1000.0
        return r

    return call


async def in_process(store: Any, warm: list[int], users: list[int], refs: list[str]) -> tuple[dict, list]:
    """Steps parse, (a)-(f) for each user: {step: ms per read} and the (f) results to check."""
    import feast.feature_server as server
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse
    from feast.feature_server_utils import convert_response_to_dict

    service = store.get_feature_service(SERVICE, allow_cache=True)
    get_fs, read_sync, read_async = store.get_feature_service, store.get_online_features, None
    steps: dict[str, Step] = {
        "parse": lambda u, _: server.GetOnlineFeaturesRequest.model_validate(json.loads(_body(u))),
        "a": lambda _u, _: get_fs(SERVICE, allow_cache=True),
        "b": lambda u, _: read_sync(features=service, entity_rows={"user_id": [u]}),
    }
    is_async = store._get_provider().async_supported.online.read  # the handler's choice of read
    if is_async:
        read_async = store.get_online_features_async
        steps["b_async"] = lambda u, _: read_async(features=service, entity_rows={"user_id": [u]})
    steps["c"] = lambda _u, done: convert_response_to_dict(done["b"].proto)
    steps["d"] = lambda _u, done: JSONResponse(content=done["c"])
    steps["e"] = lambda _u, _: run_in_threadpool(lambda: None)

    app = server.get_app(store, registry_ttl_sec=60)  # feast serve's default TTL (get_app's own is 5 s)
    inside: dict[str, float] = {}  # (a), the read and (c) of the last (f) POST, timed inside the handler

    async def post(u: int, _: Any) -> tuple[int, bytes, dict[str, float]]:
        inside.clear()
        status, body = await asgi(app, "POST", "/get-online-features", _body(u))
        return status, body, dict(inside)

    steps["f"] = post
    steps["f_refs"] = lambda u, _: asgi(app, "POST", "/get-online-features", _body(u, refs))
    steps["f_health"] = lambda _u, _: asgi(app, "GET", "/health")
    method = "get_online_features_async" if is_async else "get_online_features"
    with (
        mock.patch.object(store, "get_feature_service", timed(get_fs, inside, "f_a")),
        mock.patch.object(
            store, method, timed(read_async or read_sync, inside, "f_b_async" if is_async else "f_b")
        ),
        mock.patch.object(server, "convert_response_to_dict", timed(convert_response_to_dict, inside, "f_c")),
    ):
        async with app.router.lifespan_context(app):
            t, got = await rounds(steps, warm, users, rotate=False)
    t |= {k: [x[2][k] for x in got["f"]] for k in got["f"][0][2]}
    if bad := sorted({x[0] for k in ("f", "f_refs", "f_health") for x in got[k] if x[0] != 200}):
        raise RuntimeError(f"the in-process app answered {bad}")
    return t, [serve_features(json.loads(x[1])) for k in ("f", "f_refs") for x in got[k]]


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on uvloop (uvicorn's worker's loop; installed with uvicorn[standard], as Feast requires)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


async def over_http(url: str, url_opt: str, ctx: dict, label: str) -> dict[str, list[float]]:
    """Step (g) against ``feast serve`` at ``url`` (and ``url_opt``, run with PYTHONOPTIMIZE=1), in turn per read."""
    import requests

    with requests.Session() as session, requests.Session() as session_opt:
        conn = http.client.HTTPConnection("127.0.0.1", urlsplit(url).port, timeout=30)

        def raw(u: int, _: Any) -> dict[str, Any]:
            conn.request("POST", "/get-online-features", _body(u), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise RuntimeError(f"feast serve answered {resp.status}: {resp.read()[:300]!r}")
            return serve_features(json.loads(resp.read()))

        readers = {
            "g": http_reader(session, url, SERVICE),
            "g_refs": http_reader(session, url, SERVICE, ctx["refs"]),
            "g_opt": http_reader(session_opt, url_opt, SERVICE),
        }
        steps: dict[str, Step] = {k: lambda u, _, r=r: r(u) for k, r in readers.items()}
        steps["g_raw"] = raw
        steps["g_health"] = lambda _u, _: session.get(f"{url}/health", timeout=30).raise_for_status()
        try:
            t, got = await rounds(steps, ctx["warm"], ctx["users"], rotate=True)
        finally:
            conn.close()
    for key in ("g", "g_refs", "g_opt", "g_raw"):
        check(f"{label} {STEPS[key]}", ctx["users"], got[key], ctx["truth"], FIELDS)
    return t


def bench_store(
    online: str, repo: Path, window: tuple[datetime, datetime], serve: bool, ctx: dict
) -> list[dict]:
    """Apply and materialize ``repo`` into ``online``, then time every step; one row per step."""
    from adprior.store import StoreConfig, apply, get_store, materialize, yaml_path

    cfg, label = StoreConfig(repo=repo, online=online), f"[{online}]"
    apply(cfg)
    materialize(cfg, end=window[1], start=window[0])
    store = get_store(cfg)
    svc = store.get_feature_service(SERVICE)
    ctx["refs"] = [f"{p.name_to_use()}:{f.name}" for p in svc.feature_view_projections for f in p.features]
    t, got = _run(in_process(store, ctx["warm"], ctx["users"], ctx["refs"]))
    check(f"{label} in-process app", ctx["users"] * 2, got, ctx["truth"], FIELDS)
    if serve:
        yaml = yaml_path(cfg)
        with (
            feast_server(repo, yaml) as url,
            mock.patch.dict(os.environ, {"PYTHONOPTIMIZE": "1"}),
            feast_server(repo, yaml) as url_opt,
        ):
            t |= _run(over_http(url, url_opt, ctx, label))
    rows = [{"store": online, "step": k, "label": STEPS[k], **latency_stats(t[k])} for k in STEPS if k in t]
    log.info("%s mean ms: %s", label, {r["step"]: r["mean_ms"] for r in rows})
    return rows


def findings(rows: list[dict], online: str) -> str:
    """One paragraph for ``online``, computed from its rows (means unless p99 is named)."""
    s = {r["step"]: r for r in rows if r["store"] == online}
    m, p99 = {k: r["mean_ms"] for k, r in s.items()}, {k: r["p99_ms"] for k, r in s.items()}
    read, hops = ("b_async", 2) if "b_async" in s else ("b", 3)
    parts = {
        "parse": m["parse"],
        "(a)": m["a"],
        f"({read.replace('_', ' ')})": m[read],
        "(c)+(d)": m["c"] + m["d"],
        f"{hops} hops": hops * m["e"],
    }
    steps, inside = sum(parts.values()), m["f_a"] + m[f"f_{read}"] + m["f_c"]
    text = (
        f"**{online}**: the handler's steps timed alone add up to {steps:.2f} ms ("
        + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
        + f"); the app in-process takes {m['f']:.2f} ms ({p99['f']:.2f} p99), of which (a), the read and (c) "
        f"inside the handler take {m['f_a']:.2f} + {m[f'f_{read}']:.2f} + {m['f_c']:.2f} ms, leaving "
        f"{m['f'] - inside:.2f} ms to parsing, JSON, threadpool hops and FastAPI (GET /health in-process "
        f"{m['f_health']:.2f} ms). Naming the features instead of the service: {m['f_refs']:.2f} ms "
        f"({p99['f_refs']:.2f} p99)."
    )
    if "g" in s:
        share = {"(a)": m["f_a"], "read": m[f"f_{read}"], "(c)": m["f_c"], "rest of the app": m["f"] - inside}
        share["HTTP: server, socket, client"] = m["g"] - m["f"]
        text += (
            f" Over HTTP: {m['g']:.2f} ms ({p99['g']:.2f} p99; target 4 ms p99), of which "
            + ", ".join(f"{k} {100 * v / m['g']:.0f}%" for k, v in share.items())
            + f"; http.client instead of requests {m['g_raw']:.2f} ({p99['g_raw']:.2f} p99), GET /health "
            f"{m['g_health']:.2f} ({p99['g_health']:.2f} p99), naming the features {m['g_refs']:.2f} "
            f"({p99['g_refs']:.2f} p99), PYTHONOPTIMIZE=1 {m['g_opt']:.2f} ({p99['g_opt']:.2f} p99)."
        )
        if min(share.values()) < 0:
            text += " (A negative share: the in-process and HTTP passes ran under different load.)"
    return text


def markdown(report: dict) -> str:
    h, p = report["header"], report["params"]
    cols = [("store", "store"), ("label", "step")]
    cols += [(k, k.replace("_ms", " ms")) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "max_ms")]
    return "\n".join(
        [
            "# feast serve: where one POST /get-online-features spends its time",
            "",
            *header_lines(h),
            "- versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
            f"- service `{SERVICE}`, {p['users']} users, {p['reads']} timed reads per step after {p['warmup']} "
            f"warm-up, one random user per read (seed {p['seed']}), all steps of a read back to back",
            "",
            *table_lines(cols, report["rows"]),
            "",
            "Module docstring of bench/serve_breakdown.py: what each step runs. Percentiles do not add up; "
            "the sums and shares below use means (ms).",
            "",
            *(report["findings"][s] + "\n" for s in p["stores"]),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=2_000, help="users in the llm_predictions partition")
    ap.add_argument("--reads", type=int, default=1_000, help="timed one-user reads per step and store")
    ap.add_argument("--warmup", type=int, default=50, help="untimed reads before each step's timed ones")
    ap.add_argument("--stores", nargs="+", choices=("sqlite", "redis"), default=["sqlite", "redis"])
    ap.add_argument("--no-serve", action="store_true", help="skip step (g), the real feast serve")
    ap.add_argument("--date", default="2026-06-22", help="anchor (inference) date; event time = date + 1 day")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="bench/results/serve_breakdown.json")
    ap.add_argument("--md", default="bench/results/serve_breakdown.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("feast", "adprior.store", "dask", "distributed"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleans up through the finally blocks

    from adprior.store import StoreConfig, write_partition

    versions = store_versions() | {
        m: __import__(m).__version__ for m in ("fastapi", "starlette", "uvloop", "httptools")
    }
    day = date.fromisoformat(args.date)
    event = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    window = (event - timedelta(days=1), event + timedelta(days=1))
    rng = np.random.default_rng(args.seed)
    user_ids = np.sort(rng.choice(np.arange(1, 50 * args.users + 1), size=args.users, replace=False))
    ctx: dict[str, Any] = {
        "warm": [int(u) for u in rng.choice(user_ids, size=args.warmup)],
        "users": [int(u) for u in rng.choice(user_ids, size=args.reads)],
    }
    params = {k: getattr(args, k) for k in ("users", "reads", "warmup", "stores", "seed", "date")}
    report: dict[str, Any] = {
        "header": header(versions),
        "versions": versions,
        "params": params
        | {"serve": not args.no_serve, "serve_options": "--workers 1 --no-access-log --max-requests 0"},
        "rows": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="adprior-bench-serve-"))
    repo = tmp / "feature_repo"
    try:
        shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
        df = prediction_frame(user_ids, day, args.seed)
        write_partition(StoreConfig(repo=repo), "llm_predictions", df, f"dt={day.isoformat()}")
        ctx["truth"] = {int(r["user_id"]): r for r in df[["user_id", *FIELDS]].to_dict("records")}
        del df
        for online in args.stores:
            with redis_env(online == "redis"):
                report["rows"] += bench_store(online, repo, window, not args.no_serve, ctx)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report["findings"] = {s: findings(report["rows"], s) for s in args.stores}
    write_report(report, markdown(report), args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
