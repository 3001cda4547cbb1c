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

1. ``adprior.store.apply`` (timed, reported), then one untimed materialization of an empty window
   (imports dask and the offline store code, so the first timed store is not charged for them).
2. ``adprior.store.materialize(cfg, end, start)`` over a window holding every row, into an empty online
   store. A *row* is one (user, feature view) pair written to the online store: users x 2 views
   (``llm_advertiser_predictions`` and ``llm_user_interests``, both read from the ``llm_predictions``
   table). In Redis both views of a user land in one hash key, so keys = users.
3. The online store is emptied again and the same window is written by the CLI in a subprocess,
   ``feast -c REPO -f <yaml> materialize START END -v <view> ...``; its wall time includes the CLI's
   start-up (imports, registry load), reported as overhead against the SDK time. The start-up of a
   bare ``feast version`` is measured once as a reference.
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

The Redis server, ``feast serve`` and the temporary repo are removed on exit, errors included.

Usage (from the repository root)::

    .venv/bin/python bench/store.py                                   # 20,000 users, 1,000 reads
    .venv/bin/python bench/store.py --users 2000 --reads 200 --json /tmp/store.json --md /tmp/store.md
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, redis_env, table_lines, write_report  # noqa: E402

log = logging.getLogger("bench.store")

SERVICE = "llm_predictions_online"
VIEWS = ("llm_advertiser_predictions", "llm_user_interests")  # the views SERVICE reads (one source table)
STORES = ("sqlite", "redis")
N_ADVERTISERS = 300
N_PREDICTED = 20
N_INTERESTS = 5
MODEL_VERSION = "smollm2-135m-instruct-sft@3f9a1c2e"

# ---------------------------------------------------------------------------------------------
# Synthetic predictions
# ---------------------------------------------------------------------------------------------

_BRAND_A = [
    "North",
    "Blue",
    "Urban",
    "Golden",
    "Silver",
    "Green",
    "Bright",
    "Pacific",
    "Summit",
    "Maple",
    "Harbor",
    "Crescent",
    "Evergreen",
    "Prairie",
    "Lumen",
    "Atlas",
    "Cedar",
    "Nova",
    "Willow",
    "Iron",
]
_BRAND_B = [
    "Outfitters",
    "Home Goods",
    "Beauty",
    "Sports",
    "Kitchen Supply",
    "Pet Care",
    "Electronics",
    "Apparel",
    "Books",
    "Travel",
    "Garden Center",
    "Footwear",
    "Toys & Games",
    "Wellness",
    "Coffee Co.",
]
_INTEREST_A = [
    "trail",
    "home",
    "budget",
    "organic",
    "vintage",
    "smart",
    "outdoor",
    "indoor",
    "family",
    "premium",
    "DIY",
    "sustainable",
    "travel-size",
    "wireless",
    "handmade",
]
_INTEREST_B = [
    "running shoes",
    "espresso machines",
    "skincare routines",
    "camping gear",
    "board games",
    "kitchen gadgets",
    "dog toys",
    "fitness trackers",
    "garden furniture",
    "winter jackets",
    "children's books",
    "noise-cancelling headphones",
    "yoga mats",
    "road trips",
    "home decor",
]


def advertiser_names(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct advertiser names of 12-30 characters (e.g. 'Summit Garden Center')."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = f"{rng.choice(_BRAND_A)} {rng.choice(_BRAND_B)}"
        if name in seen:
            name = f"{name} {len(names)}"
        seen.add(name)
        names.append(name)
    return names


def prediction_frame(user_ids: np.ndarray, day: date, seed: int) -> Any:
    """A schema-valid ``llm_predictions`` frame (PREDICTION_SCHEMA) for ``user_ids`` on anchor date ``day``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = len(user_ids)
    pool = advertiser_names(N_ADVERTISERS, rng)
    pool_ids = np.arange(1, N_ADVERTISERS + 1, dtype=np.int64) * 13 + 1000  # non-contiguous ids
    picks = np.empty((n, N_PREDICTED), dtype=np.int64)
    for lo in range(0, n, 5000):  # 20 distinct advertisers per user, in random (model) order
        hi = min(n, lo + 5000)
        picks[lo:hi] = np.argsort(rng.random((hi - lo, N_ADVERTISERS)), axis=1)[:, :N_PREDICTED]
    interest_a = rng.integers(0, len(_INTEREST_A), size=(n, N_INTERESTS))
    interest_b = np.argsort(rng.random((n, len(_INTEREST_B))), axis=1)[:, :N_INTERESTS]
    n_unresolved = rng.poisson(0.3, size=n).astype(np.int64)
    ids_col, names_col, raw_col, interests_col, output_col = [], [], [], [], []
    for i in range(n):
        names = [pool[j] for j in picks[i]]
        interests = [
            f"{_INTEREST_A[a]} {_INTEREST_B[b]}" for a, b in zip(interest_a[i], interest_b[i], strict=True)
        ]
        raw = [x.lower() if k % 4 == 3 else x for k, x in enumerate(names)]
        raw += [f"Unknown Brand {k}" for k in range(n_unresolved[i])]
        ids_col.append(pool_ids[picks[i]].tolist())
        names_col.append(names)
        raw_col.append(raw)
        interests_col.append(interests)
        output_col.append(
            "Advertisers:\n"
            + "\n".join(f"{k}. {x}" for k, x in enumerate(raw, 1))
            + "\nInterests: "
            + "; ".join(interests)
        )
    event_ts = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    return pd.DataFrame(
        {
            "user_id": user_ids.astype(np.int64),
            "event_timestamp": pd.Series([event_ts] * n, dtype="datetime64[us, UTC]"),
            "created_timestamp": pd.Series([datetime.now(UTC)] * n, dtype="datetime64[us, UTC]"),
            "anchor_date": [day] * n,
            "advertiser_ids": ids_col,
            "advertiser_names": names_col,
            "raw_names": raw_col,
            "interests": interests_col,
            "model_version": MODEL_VERSION,
            "engine": "transformers",
            "status": np.where(n_unresolved > 0, "partial", "ok"),
            "n_unresolved": n_unresolved,
            "raw_output": output_col,
        }
    )


# ---------------------------------------------------------------------------------------------
# Processes and stores
# ---------------------------------------------------------------------------------------------


def feast_exe() -> str:
    """The feast CLI of this interpreter's environment (else the one on PATH)."""
    exe = Path(sys.executable).parent / "feast"
    found = str(exe) if exe.exists() else shutil.which("feast")
    if not found:
        raise FileNotFoundError("the feast CLI is not installed in this environment")
    return found


def run_cli(args: list[str], timeout: float = 600.0) -> float:
    """Run ``feast <args>`` to completion; returns its wall time (s). Raises with its output on failure."""
    cmd = [feast_exe(), *args]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}:\n{(res.stdout + res.stderr)[-3000:]}")
    return seconds


def clear_online(cfg: Any) -> None:
    """Empty the online store of ``cfg`` (SQLite: every table's rows; Redis: FLUSHDB)."""
    if cfg.online == "sqlite":
        with contextlib.closing(sqlite3.connect(Path(cfg.repo) / "data" / "online_store.db")) as con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for t in tables:
                con.execute(f'DELETE FROM "{t}"')
            con.commit()
    else:
        import redis

        host, port = os.environ[cfg.redis_env].split(",")[0].rsplit(":", 1)
        client = redis.Redis(host=host, port=int(port))
        try:
            client.flushdb()
        finally:
            client.close()


@contextlib.contextmanager
def feast_server(repo: Path, yaml_file: Path, timeout: float = 240.0) -> Iterator[str]:
    """Run ``feast serve`` on a free loopback port until the block ends; yields its base URL.

    The server runs in its own process group (gunicorn master + worker), which is terminated (then
    killed) on exit; its output goes to a temporary file, shown when it fails to start.
    """
    import requests

    from adprior.store import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        feast_exe(),
        "-c",
        str(repo),
        "-f",
        str(yaml_file),
        "serve",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--max-requests",
        "0",
    ]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True
        )
        try:
            t0 = time.perf_counter()
            while True:
                if proc.poll() is not None:
                    out.seek(0)
                    raise RuntimeError(
                        f"feast serve exited {proc.returncode}:\n"
                        f"{out.read().decode(errors='replace')[-3000:]}"
                    )
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                if time.perf_counter() - t0 > timeout:
                    out.seek(0)
                    raise RuntimeError(
                        f"feast serve did not answer within {timeout:.0f} s:\n"
                        f"{out.read().decode(errors='replace')[-3000:]}"
                    )
                time.sleep(0.25)
            log.info("feast serve up on %s after %.1f s", url, time.perf_counter() - t0)
            yield url
        finally:
            stop_group(proc)


def stop_group(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM the process group led by ``proc`` (started with start_new_session), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers left behind by a master that exited first


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def latency_stats(ms: list[float]) -> dict[str, float]:
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


def sdk_reader(store: Any) -> Reader:
    """One-user lookup through the SDK: features of SERVICE as {name: value}."""
    service = store.get_feature_service(SERVICE)

    def read(u: int) -> dict[str, Any]:
        d = store.get_online_features(features=service, entity_rows=[{"user_id": u}]).to_dict()
        return {k: v[0] for k, v in d.items()}

    return read


def http_reader(session: Any, url: str) -> Reader:
    """One-user lookup through feast serve: features of SERVICE as {name: value}."""

    def read(u: int) -> dict[str, Any]:
        resp = session.post(
            f"{url}/get-online-features",
            json={"feature_service": SERVICE, "entities": {"user_id": [u]}},
            timeout=30,
        )
        resp.raise_for_status()
        body = resp.json()
        names = body["metadata"]["feature_names"]
        return {n: r["values"][0] for n, r in zip(names, body["results"], strict=True)}

    return read


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


def _chars(values: list[str]) -> int:
    return sum(len(v) for v in values)


def redis_version() -> str | None:
    exe = shutil.which("redis-server")
    if not exe:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    return next((p.split("=", 1)[1] for p in out.split() if p.startswith("v=")), out.strip() or None)


def _versions() -> dict[str, Any]:
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
# Report
# ---------------------------------------------------------------------------------------------

MAT_COLUMNS = [
    ("store", "online store"),
    ("path", "path"),
    ("rows", "rows"),
    ("keys", "entity keys"),
    ("seconds", "s"),
    ("rows_per_s", "rows/s"),
    ("wall_s", "wall s"),
    ("overhead_s", "CLI overhead s"),
]
LOOKUP_COLUMNS = [
    ("store", "online store"),
    ("path", "path"),
    ("reads", "reads"),
    ("p50_ms", "p50 ms"),
    ("p90_ms", "p90 ms"),
    ("p99_ms", "p99 ms"),
    ("mean_ms", "mean ms"),
    ("max_ms", "max ms"),
    ("reads_per_s", "reads/s"),
]
SETUP_COLUMNS = [
    ("store", "online store"),
    ("apply_s", "apply s"),
    ("warmup_materialize_s", "warm-up materialize s"),
    ("serve_startup_s", "feast serve start-up s"),
]


def markdown(report: dict) -> str:
    h, p, m = report["header"], report["params"], report["header"]["machine"]
    versions = ", ".join(
        f"{k} {m[k]}"
        for k in (
            "feast",
            "redis_server",
            "redis_py",
            "hiredis",
            "pandas",
            "pyarrow",
            "gunicorn",
            "uvicorn",
            "requests",
        )
        if m.get(k)
    )
    lines = [
        "# Feast store benchmark (materialize, online lookups)",
        "",
        *header_lines(h),
        f"- versions: {versions}",
        f"- data: {p['users']} users in one `llm_predictions` partition (dt={p['date']}), {N_PREDICTED} advertiser "
        f"ids + names (pool of {N_ADVERTISERS}) and {N_INTERESTS} interests per user, parquet "
        f"{report['data']['parquet_mib']} MiB (mean characters per user: "
        + ", ".join(f"{k} {v}" for k, v in report["data"]["mean_chars_per_user"].items())
        + f"); materialize window {p['start']} .. {p['end']} (UTC); reads: "
        f"{p['reads']} timed after {p['warmup']} warm-up, seed {p['seed']}",
        f"- `feast version` start-up (reference for the CLI overhead): {report.get('cli_startup_s', '–')} s",
        "",
        "## Materialize",
        "",
        "row = one (user, feature view) pair written to the online store: users x 2 views "
        f"({', '.join(VIEWS)}, both from the `llm_predictions` table); entity keys = distinct users "
        "(in Redis both views of a user share one hash key). SDK: `adprior.store.materialize(cfg, end, start)`, "
        "s = Feast's `store.materialize` call, wall s = the whole function (registry load, Redis PING, row "
        "count). CLI: `feast -c REPO -f <yaml> materialize START END -v ...` in a subprocess, s = wall "
        "time including start-up; CLI overhead = CLI s - SDK s. Each run writes into an emptied online "
        "store; the untimed warm-up materialized an empty window first.",
        "",
        *table_lines(MAT_COLUMNS, report["materialize"]),
        "",
        "## One-user online lookups",
        "",
        f"Sequential reads of the `{SERVICE}` service (advertiser_ids, advertiser_names, model_version, "
        "status, n_unresolved, interests) for one random user each; latency per read from the client. "
        "SDK = `get_online_features(...).to_dict()` on one FeatureStore in this process; serve = POST "
        "`/get-online-features` to `feast serve` (1 gunicorn worker, no access log, max-requests off) "
        "over one keep-alive `requests` session, incl. `.json()`. Every timed response was checked "
        "against the written advertiser_ids. GET /health = the same server and session answering "
        "without an online read (Feast's health check: a cached registry call): HTTP + FastAPI + gunicorn cost.",
        "",
        *table_lines(LOOKUP_COLUMNS, report["lookups"]),
        "",
        "## Set-up",
        "",
        *table_lines(SETUP_COLUMNS, report["setup"]),
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


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

    from adprior.store import StoreConfig, apply, get_store, materialize, yaml_path

    cfg = StoreConfig(repo=repo, online=online)
    start, end = window
    setup: dict[str, Any] = {"store": online}
    t0 = time.perf_counter()
    apply(cfg)
    setup["apply_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    materialize(cfg, end=start - timedelta(seconds=1), start=start - timedelta(days=1))  # empty window
    setup["warmup_materialize_s"] = round(time.perf_counter() - t0, 2)
    log.info(
        "[%s] apply %.1f s, warm-up materialize %.1f s",
        online,
        setup["apply_s"],
        setup["warmup_materialize_s"],
    )

    # Materialize through the SDK, then (after emptying the store) through the CLI.
    clear_online(cfg)
    t0 = time.perf_counter()
    res = materialize(cfg, end=end, start=start)
    wall = time.perf_counter() - t0
    rows = sum(v["rows"] for v in res["views"].values())
    if sorted(res["views"]) != sorted(VIEWS) or any(v["rows"] != len(truth) for v in res["views"].values()):
        raise RuntimeError(
            f"[{online}] materialize wrote {res['views']}, expected {len(truth)} rows in {VIEWS}"
        )
    sdk = {
        "store": online,
        "path": "SDK",
        "rows": rows,
        "keys": len(truth),
        "seconds": res["seconds"],
        "rows_per_s": round(rows / res["seconds"], 1),
        "wall_s": round(wall, 2),
    }
    report["materialize"].append(sdk)
    log.info(
        "[%s] SDK materialize: %d rows in %.2f s (%.0f rows/s; wall %.2f s)",
        online,
        rows,
        res["seconds"],
        sdk["rows_per_s"],
        wall,
    )
    check(
        f"[{online}] SDK after SDK materialize",
        verify,
        [sdk_reader(get_store(cfg))(u) for u in verify],
        truth,
        ("advertiser_ids", "advertiser_names", "interests", "model_version"),
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
            "rows": rows,
            "keys": len(truth),
            "seconds": round(cli_s, 2),
            "rows_per_s": round(rows / cli_s, 1),
            "wall_s": round(cli_s, 2),
            "overhead_s": round(cli_s - res["seconds"], 2),
        }
    )
    log.info("[%s] CLI materialize: %d rows in %.2f s (%.0f rows/s)", online, rows, cli_s, rows / cli_s)

    # Lookups through the SDK (the store as the CLI left it).
    fields = ("advertiser_ids",)
    store = get_store(cfg)
    read = sdk_reader(store)
    check(
        f"[{online}] SDK after CLI materialize",
        verify,
        [read(u) for u in verify],
        truth,
        ("advertiser_ids", "advertiser_names", "interests", "model_version"),
    )
    ms, got = time_reads(read, warm, reads)
    check(f"[{online}] SDK timed reads", reads, got, truth, fields)
    report["lookups"].append({"store": online, "path": "SDK", "reads": len(ms), **latency_stats(ms)})
    log.info("[%s] SDK lookups: %s", online, report["lookups"][-1])

    # Lookups through feast serve.
    if not args.no_serve:
        t0 = time.perf_counter()
        with feast_server(repo, yaml_path(cfg)) as url, requests.Session() as session:
            setup["serve_startup_s"] = round(time.perf_counter() - t0, 2)
            read = http_reader(session, url)
            check(
                f"[{online}] feast serve",
                verify,
                [read(u) for u in verify],
                truth,
                ("advertiser_ids", "advertiser_names", "interests", "model_version"),
            )
            ms, got = time_reads(read, warm, reads)
            # The HTTP floor: GET /health on the same session (a cached registry call, no online read).
            floor, _ = time_reads(
                lambda _u: {"status": session.get(f"{url}/health", timeout=30).status_code}, warm, reads
            )
        check(f"[{online}] feast serve timed reads", reads, got, truth, fields)
        report["lookups"].append(
            {"store": online, "path": "feast serve", "reads": len(ms), **latency_stats(ms)}
        )
        report["lookups"].append(
            {
                "store": online,
                "path": "feast serve GET /health (HTTP floor)",
                "reads": len(floor),
                **latency_stats(floor),
            }
        )
        log.info("[%s] serve lookups: %s", online, report["lookups"][-1])
    report["setup"].append(setup)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=20_000, help="users in the llm_predictions partition")
    ap.add_argument("--reads", type=int, default=1_000, help="timed one-user reads per (store, path)")
    ap.add_argument("--warmup", type=int, default=50, help="untimed reads before the timed ones")
    ap.add_argument("--verify", type=int, default=5, help="users whose full prediction is checked per path")
    ap.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
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
        "header": header(_versions()),
        "params": {
            "users": args.users,
            "reads": args.reads,
            "warmup": args.warmup,
            "verify": args.verify,
            "stores": args.stores,
            "serve": not args.no_serve,
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

    write_report(report, markdown(report), args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
