"""The markdown report of the Feast store benchmark (bench/store.py): materialize, lookups, set-up."""

from __future__ import annotations

from bench.common import header_lines, table_lines
from bench.synthetic_predictions import N_ADVERTISERS, N_INTERESTS, N_PREDICTED

MAT_COLUMNS = [
    ("store", "online store"),
    ("path", "path"),
    ("engine", "engine"),
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
    ("warmup_materialize_s", "warm-up materialize s (older reports)"),
    ("warmup_local_s", "warm-up Feast local s"),
    ("warmup_arrow_s", "warm-up Arrow s"),
    ("spark_apply_s", "Spark yaml apply s"),
    ("warmup_spark_s", "warm-up Spark s (session start)"),
    ("serve_startup_s", "feast serve start-up s"),
]


# The materialize rows of the last run before the yamls named an engine (bench/results/store.md of
# 2026-11-23, commit e8985e7, 20,000 users, the same command): SDK and CLI were Feast 0.67's local engine.
_BEFORE_KEYS = ("store", "path", "engine", "rows", "keys", "seconds", "rows_per_s", "wall_s", "overhead_s")
BEFORE = [
    dict(zip(_BEFORE_KEYS, r, strict=True))
    for r in (
        ("sqlite", "SDK", "Feast local", 40000, 20000, 33.035, 1210.8, 33.05, None),
        ("sqlite", "CLI", "Feast local", 40000, 20000, 38.94, 1027.3, 38.94, 5.9),
        ("redis", "SDK", "Feast local", 40000, 20000, 29.968, 1334.8, 30.0, None),
        ("redis", "CLI", "Feast local", 40000, 20000, 37.48, 1067.1, 37.48, 7.52),
    )
]


def markdown(report: dict, service: str, views: tuple[str, ...]) -> str:
    """The report of a run: header, materialize table, lookup table, set-up table.

    Args:
        report: the benchmark's JSON report (header, params, data, materialize, lookups, setup).
        service: the feature service the lookups read.
        views: the feature views materialized (both read from the ``llm_predictions`` table).
    """
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
        f"({', '.join(views)}, both from the `llm_predictions` table); entity keys = distinct users "
        "(in Redis both views of a user share one hash key). SDK: `adprior.store.materialize(cfg, end, start)` "
        "with the engine named: Feast local = Feast 0.67's local engine (`StoreConfig(batch_engine='local')`; "
        "the SDK row of reports before the yamls named an engine), Arrow (yaml) = "
        "`adprior.store.engine.ArrowComputeEngine` of feature_store.yaml / .redis.yaml, Feast Spark = the "
        "Spark yaml of the store (Spark offline store + Feast's Spark compute engine, local[2]); s = Feast's "
        "`store.materialize` call, wall s = the whole function (registry load, Redis PING, row count). CLI: "
        "`feast -c REPO -f <yaml> materialize START END -v ...` in a subprocess with the yaml's engine "
        "(Feast local in reports before the Arrow engine), s = wall time including start-up; CLI overhead = "
        "CLI s - SDK s of the Arrow engine. Each run writes into an emptied online store after an untimed "
        "materialization of an empty window with the same engine.",
        "",
        *table_lines(MAT_COLUMNS, report["materialize"]),
        "",
        "Before the Arrow engine (2026-11-23, commit e8985e7, 20,000 users, `.venv/bin/python bench/store.py`, "
        "load average 1.29 at start): Feast's local engine on both paths.",
        "",
        *table_lines(MAT_COLUMNS, BEFORE),
        "",
        "## One-user online lookups",
        "",
        f"Sequential reads of the `{service}` service (advertiser_ids, advertiser_names, model_version, "
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
        *table_lines(
            [c for c in SETUP_COLUMNS if any(r.get(c[0]) is not None for r in report["setup"])],
            report["setup"],
        ),
    ]
    return "\n".join(lines) + "\n"
