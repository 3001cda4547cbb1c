"""The report of the retrieval benchmark (bench/retrieval.py): markdown tables and a rich latency table."""

from __future__ import annotations

from typing import Any

from bench.common import header_lines, table_lines

COLUMNS = [
    ("items", "items"),
    ("index", "index"),
    ("filter", "filter"),
    ("param", "search param"),
    ("build_s", "build s"),
    ("index_mib", "index MiB"),
    ("f_p50_ms", "filtered p50 ms"),
    ("f_p99_ms", "filtered p99 ms"),
    ("recall", "filtered recall@k"),
    ("full_rows", "full rows"),
    ("u_p50_ms", "unrestricted p50 ms"),
    ("u_p99_ms", "unrestricted p99 ms"),
    ("u_recall", "unrestricted recall@k"),
]
SIZE_COLUMNS = [
    ("items", "items"),
    ("advertisers_with_items", "advertisers with items"),
    ("largest_advertiser_items", "largest advertiser items"),
    ("median_advertiser_items", "median advertiser items"),
    ("allowed_items_mean", "allowed items / query (mean)"),
    ("allowed_items_p10", "p10"),
    ("allowed_items_p90", "p90"),
    ("allowed_share_mean", "allowed share"),
    ("data_s", "data s"),
    ("size_s", "size total s"),
    ("peak_rss_mib", "peak RSS MiB"),
]


def markdown(report: dict[str, Any]) -> str:
    """The report of a run: header, latency and recall table, data and memory per size."""
    h, p, m = report["header"], report["params"], report["header"]["machine"]
    lines = [
        "# Advertiser-restricted retrieval benchmark (retrieval/index.py)",
        "",
        *header_lines(h),
        f"- versions: faiss {m.get('faiss')}, numpy {m.get('numpy')}; faiss OpenMP threads: build "
        f"{p['build_threads'] or m.get('faiss_default_threads')}, search {p['search_threads']}",
        f"- data: d={p['dim']} Gaussian mixture ({p['clusters']} unit centres, spread {p['spread']}, "
        f"L2-normalised, inner product), {p['advertisers']} advertisers with Zipf skew {p['zipf']} (items and "
        f"allowed sets), {p['allowed']} allowed advertisers per query, k={p['k']}, {p['queries']} timed "
        f"queries after {p['warmup']} warm-up, seed {p['seed']}",
        "",
        "## Latency and recall",
        "",
        "One query per call, each timed on its own (Python wrapper included: ranges, selector, guard, id "
        "mapping). filtered = `search_advertisers` (recall@k against the exact flat + selector search); "
        "unrestricted = `search` (recall@k against exact flat search). full rows = share of queries "
        "answered with k items. build s = the index construction (partition: the per-advertiser indexes "
        "only); index MiB = `ItemIndex.memory_bytes()` (sorted vector copy + ids + faiss index, partitions "
        "included; the partition index also holds a flat main index). A blank build cell = the same "
        "index as the row above, another search setting.",
        "",
        *table_lines(COLUMNS, report["rows"]),
        "",
        "## Data and memory per size",
        "",
        *table_lines(SIZE_COLUMNS, report["sizes"]),
    ]
    return "\n".join(lines) + "\n"


def print_table(report: dict[str, Any]) -> None:
    """The latency table with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"advertiser-restricted retrieval, k={report['params']['k']}")
    for _, title in COLUMNS:
        table.add_column(title, justify="left" if title in ("index", "filter", "search param") else "right")
    for r in report["rows"]:
        table.add_row(*("–" if r.get(key) is None else str(r[key]) for key, _ in COLUMNS))
    Console(width=200).print(table)
