"""The report of the nightly scale benchmark (bench/scale.py): stages, growth, extrapolation tables."""

from __future__ import annotations

from bench.common import header_lines, table_lines
from bench.scale_stages import BUDGET_TOKENS, IMPRESSION_RATE


def _outputs_text(o: dict) -> str:
    parts = []
    for k, v in o.items():
        if isinstance(v, dict):
            v = "{" + ", ".join(f"{kk}: {vv}" for kk, vv in v.items()) + "}"
        parts.append(f"{k} {v}")
    return "; ".join(parts).replace("|", "/")


STAGE_COLUMNS = [
    ("users", "users"),
    ("stage", "stage"),
    ("seconds", "s"),
    ("inner_s", "inner s"),
    ("peak_tree_rss_mib", "peak tree RSS MiB"),
    ("max_proc_rss_mib", "max 1-proc RSS MiB"),
    ("outputs_text", "outputs"),
]
GROWTH_COLUMNS = [
    ("stage", "stage"),
    ("from_users", "from users"),
    ("to_users", "to users"),
    ("size_ratio", "size ratio"),
    ("time_ratio", "time ratio"),
    ("time_ratio_per_size_ratio", "time ratio / size ratio"),
    ("exponent", "b (t ~ N^b)"),
    ("inner_time_ratio", "inner time ratio"),
    ("inner_exponent", "inner b"),
    ("mem_ratio", "peak tree RSS ratio"),
]
EXTRA_COLUMNS = [
    ("users", "users"),
    ("stage", "stage"),
    ("fixed_s", "fixed s"),
    ("ms_per_user", "ms/user"),
    ("est_seconds", "est. s"),
    ("est_minutes", "est. min"),
    ("kib_per_user", "RSS KiB/user"),
    ("est_peak_tree_rss_mib", "est. peak tree RSS MiB"),
]


def stage_rows(report: dict) -> list[dict]:
    """One row per measured stage of every size, plus one per failed stage."""
    rows = []
    for r in report["results"]:
        for s in r["stages"]:
            rows.append({"users": r["users"], **s, "outputs_text": _outputs_text(s["outputs"])})
        if r["failed"]:
            first_line = r["failed"]["error"].splitlines()[0] if r["failed"]["error"] else ""
            rows.append(
                {
                    "users": r["users"],
                    "stage": r["failed"]["stage"] + " (FAILED)",
                    "outputs_text": first_line.replace("|", "/")[:200],
                }
            )
    return rows


def markdown(report: dict) -> str:
    """The report of a run: header, stage table, growth table, extrapolation."""
    h, p = report["header"], report["params"]
    lines = [
        "# Nightly pipeline scale benchmark (time and peak memory per stage vs users)",
        "",
        *header_lines(h),
        f"- pipeline: world seed {p['seed']}, impression rate {IMPRESSION_RATE}, simulator workers {p['workers']}; "
        f"anchor date {p['day']} (world end - 8 days); Spark master `{p['master']}`; sampled inference of "
        f"{p['infer_users']} users (the nightly's engine and model, budget {BUDGET_TOKENS} tokens, runner "
        f"`{p['runner']}`); Feast offline store = parquet files, online store = SQLite; materialize = the yaml's "
        "engine (adprior.store.engine.ArrowComputeEngine; Feast 0.67's local engine in reports before it)"
        + (
            f"; materialize variants after the pipeline: {', '.join(p['materialize_engines'])} (each into a "
            "fresh online store of a sibling repo over the same offline tables: materialize-local = Feast's "
            "local engine into SQLite, materialize-redis = the Arrow engine into a private redis-server, "
            "materialize-spark-redis = Feast's Spark offline store + Spark engine, local[2], into Redis)"
            if p.get("materialize_engines")
            else ""
        ),
        "",
        "Each stage runs in a fresh Python process. s = wall time of that process (start-up and imports "
        "included); inner s = the library call(s) alone (compile: without the SparkSession start; materialize: "
        f"without `apply`). peak tree RSS = max over psutil polls every {p['poll']} s of the summed RSS of the "
        "stage process and its descendants (simulator pool, Spark JVM, Ray); max 1-proc RSS = the largest "
        "RSS of any single process (ru_maxrss of the stage process and of its reaped children, the JVM "
        "included, and the largest polled RSS).",
        "",
        "## Stages",
        "",
        *table_lines(STAGE_COLUMNS, stage_rows(report)),
    ]
    if report["growth"]:
        lines += [
            "",
            "## Growth between sizes",
            "",
            "time ratio / size ratio: 1 = linear, < 1 = sub-linear (fixed costs dominate), > 1 = super-linear; "
            "b = log(time ratio) / log(size ratio).",
            "",
            *table_lines(GROWTH_COLUMNS, report["growth"]),
        ]
    if report["extrapolation"]:
        lines += [
            "",
            "## Extrapolation (estimate, not a measurement)",
            "",
            "Per stage, t(N) = fixed s + ms/user x N through the last two measured sizes (per-user cost "
            "clamped >= 0), the same for peak tree RSS; total = sum of the stages, its memory = the largest "
            "stage's. Assumes at most linear growth beyond the largest size: a super-linear stage (a spilling "
            "shuffle) would be underestimated, memory that a stage bounds by chunking overestimated.",
            "",
            *table_lines(EXTRA_COLUMNS, report["extrapolation"]),
        ]
    return "\n".join(lines) + "\n"


def print_rich(report: dict) -> None:
    """The stage table with rich (console progress; the markdown holds the same numbers)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="nightly pipeline: stages vs users")
    for _, title in STAGE_COLUMNS[:-1]:
        t.add_column(title, justify="right")
    for r in stage_rows(report):
        t.add_row(*("–" if r.get(k) is None else str(r[k]) for k, _ in STAGE_COLUMNS[:-1]))
    Console(stderr=True).print(t)
