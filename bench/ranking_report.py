"""The report of the online ranking benchmark (bench/ranking.py): markdown tables and a rich latency table."""

from __future__ import annotations

from bench.common import header_lines, table_lines

COLUMNS = [
    ("store", "online store"),
    ("library", "library"),
    ("features", "features"),
    ("path", "path"),
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
FAST_COLUMNS = [
    ("store", "online store"),
    ("features", "features"),
    ("requests", "requests"),
    ("user_p50_ms", "user views p50 ms"),
    ("user_p99_ms", "user views p99 ms"),
    ("advertisers_p50_ms", "advertiser rows p50 ms"),
    ("advertisers_p99_ms", "advertiser rows p99 ms"),
    ("frame_p50_ms", "frame p50 ms"),
    ("frame_p99_ms", "frame p99 ms"),
    ("frame_cached_p50_ms", "frame, advertisers kept, p50 ms"),
    ("frame_cached_p99_ms", "frame, advertisers kept, p99 ms"),
]
PREDICT_COLUMNS = [
    ("store", "online store"),
    ("library", "library"),
    ("features", "features"),
    ("path", "path"),
    ("rows_mean", "rows (mean)"),
    ("columns", "model columns"),
    ("predict_mean_ms", "predict mean ms"),
    ("array_mean_ms", "FeatureSpec.array mean ms"),
    ("model_mean_ms", "library predict mean ms"),
]
SETUP_COLUMNS = [
    ("store", "online store"),
    ("apply_s", "apply s"),
    ("materialize_s", "materialize s"),
    ("rows", "rows written"),
]


def markdown(report: dict) -> str:
    """The report of a run: header, latency table, fetch and predict breakdowns, set-up."""
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
        f"- paths: {', '.join(p.get('paths', ['feast']))}; Feast definitions: "
        f"{p.get('definitions', 'run')} (checkout = this code's feature_repo/, run = the copy in the repo); "
        f"fast-cached keeps an advertiser's row {p.get('advertiser_max_age_s', '–')} s",
        "- GBDT predict threads: $OMP_NUM_THREADS = "
        + (p["omp_num_threads"] or "unset (library default: all cores)"),
        "",
        "## Latency per request",
        "",
        "All combinations interleaved request by request (rotating order). path: fast = "
        "`adprior.store.CandidateFeatures` (the user's views read with one entity row, the distinct "
        "advertisers' rows with one `online_read`, the on-demand views run in process by their UDFs); "
        "fast-cached = the same with advertiser rows kept for the stated age (`OnlineRanker`'s default: "
        "advertiser views change when materialize runs); feast = `get_online_features` "
        "with the feature service (Feast runs the on-demand views) and `.to_df()`. end to end = "
        "`OnlineRanker.score(user, ads, now)` (the fast paths hand the columns to the model without a "
        "DataFrame); fetch = `OnlineRanker.features(user, distinct advertisers)` (the DataFrame); "
        "predict = `SavedModel.predict(frame, now)` on that frame. candidates/s = candidates per request / "
        "mean latency. Every verified request had score() == predict(features()), identical across stores "
        "and paths.",
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
        "## Where the fast path's fetch goes",
        "",
        "`CandidateFeatures` parts, interleaved on the same requests: user views = `user_row` (the user's "
        "row of each user-keyed view, one `online_read` per view, values converted); advertiser rows = "
        "`read` (the provider's `online_read` of the distinct advertisers, values converted); frame = "
        "`frame` (both reads, the on-demand views' UDFs, the frame) with advertisers read per request, and "
        "with every advertiser row kept.",
        "",
        *table_lines(FAST_COLUMNS, report.get("fast_breakdown", [])),
        "",
        "## Where predict goes",
        "",
        "`FeatureSpec.array(frame, now)` (the float64 model array, categoricals as their training codes) "
        "alone on the same frames; library predict = predict mean - array mean (the booster on that array: "
        "xgboost `inplace_predict`, lightgbm `Booster.predict`). "
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
            title,
            justify="left" if title in ("online store", "library", "features", "path", "part") else "right",
        )
    for r in report["rows"]:
        table.add_row(*("–" if r.get(k) is None else str(r[k]) for k, _ in COLUMNS))
    Console(width=160).print(table)
