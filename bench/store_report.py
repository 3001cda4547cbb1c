"""The markdown report of the Feast store benchmark (bench/store.py): materialize, lookups, set-up."""

from __future__ import annotations

from bench.common import header_lines, table_lines
from bench.synthetic_predictions import N_ADVERTISERS, N_INTERESTS, N_PREDICTED

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
        *table_lines(SETUP_COLUMNS, report["setup"]),
    ]
    return "\n".join(lines) + "\n"
