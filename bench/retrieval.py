"""Benchmark of advertiser-restricted item retrieval (retrieval/index.py): build time, latency, recall.

The LLM candidate generator (paper 3.6.1) searches a user embedding against the ad embeddings of
the (up to 20) advertisers the LLM predicted for the user. Data, per size N (seeded, ``--seed``):

* N item vectors of dimension ``--dim`` from a Gaussian mixture: ``--clusters`` unit-norm centres,
  item = centre + ``--spread`` * N(0, I/dim), L2-normalised (so inner product = cosine). Item ids
  are a random permutation of 0..N-1.
* ``--advertisers`` advertisers; each item's advertiser is drawn independently of its cluster with
  Zipf-like probability ∝ 1 / rank^``--zipf`` (a random advertiser id gets each rank).
* ``--queries`` timed queries (plus ``--warmup`` untimed ones) from the same mixture, each with
  ``--allowed`` distinct advertisers drawn without replacement with the same skew. The allowed
  item count per query is reported (it sets how selective the filter is).

For each size, each index is built, measured and freed before the next one:

1. ``flat + selector``: exact ``IndexFlatIP`` searched with an ``IDSelectorBitmap`` (the exact
   reference: its results are the ground truth of every recall@k; it is also timed).
2. ``partition``: one exact ``IndexFlatIP`` per advertiser, the allowed advertisers' partitions
   searched and their top-k merged (build = the partitions only; the flat main index it also
   holds for unrestricted search is built separately and reported in the JSON).
3. ``ivf + selector`` (``IndexIVFFlat``, nlist ``--nlist``, 0 = round(sqrt(N))) at every
   ``--nprobe``; ``hnsw + selector`` (``IndexHNSWFlat``, ``--hnsw-m``, ``--ef-construction``) at every
   ``--ef-search``. With ``--selectors bitmap,batch`` the IVF/HNSW rows are repeated with an
   ``IDSelectorBatch`` (hash set) instead of the bitmap.

What is timed:

* build s: wall time of the index construction (IVF: k-means training + add; HNSW: graph insertion;
  flat/partition: copying the vectors), measured inside ``ItemIndex`` (``build_seconds``); the
  sorting by advertiser and the input checks of ``ItemIndex.__init__`` are not included.
* filtered latency: ``ItemIndex.search_advertisers(query [d], advertiser_ids, k)`` for one query at
  a time, each call timed on its own with ``time.perf_counter`` after the warm-up queries; this
  includes the Python side (input checks, advertiser -> position ranges, building the selector's
  bitmap or hash set, the result guard, position -> item id mapping), not just faiss.
* unrestricted latency: ``ItemIndex.search(query [d], k)`` likewise (flat = exact, IVF/HNSW at the
  row's nprobe / efSearch), recall against the exact unrestricted top-k.

recall@k = |returned ∩ exact| / |exact| summed over queries (exact = top-k of the allowed items,
fewer when they own fewer); full rows = share of queries answered with k results (IVF/HNSW with a
selector may find fewer than k allowed items within nprobe lists / the efSearch beam). Every
returned item is checked to belong to an allowed advertiser (the benchmark aborts otherwise).
index MiB = ``ItemIndex.memory_bytes()`` summed (the sorted vector copy and id arrays + the faiss
index: codes, ids, centroids, HNSW graph; + the partitions). Peak RSS = ``ru_maxrss`` of this process
after the size (sizes run in increasing order, so it is the peak of the largest size so far).

Threads: builds run with ``--build-threads`` faiss OpenMP threads (0 = faiss's default, all usable
cores), searches with ``--search-threads`` (default 1: one query per call on one thread, as a
serving worker would; more threads only add OpenMP synchronisation to a single-query search).

The synthetic items and queries are made by ``bench/retrieval_data.py``, the report by
``bench/retrieval_report.py``.

Usage (from the repository root)::

    .venv/bin/python bench/retrieval.py                                    # 100k and 1M items
    .venv/bin/python bench/retrieval.py --sizes 20000 --queries 50 --json /tmp/r.json --md /tmp/r.md
"""

from __future__ import annotations

import argparse
import gc
import logging
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, write_report  # noqa: E402
from bench.retrieval_data import make_data  # noqa: E402
from bench.retrieval_report import markdown, print_table  # noqa: E402

log = logging.getLogger("bench.retrieval")
MIB = 1024 * 1024

Search = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _ints(text: str) -> list[int]:
    """argparse type: comma-separated positive integers (1e6 and 1_000_000 accepted)."""
    try:
        vals = [int(float(s.replace("_", ""))) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers") from exc
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated positive integers")
    return vals


def _selectors(text: str) -> list[str]:
    vals = [s.strip() for s in text.split(",") if s.strip()]
    if not vals or any(v not in ("bitmap", "batch") for v in vals):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated subset of bitmap,batch")
    return list(dict.fromkeys(vals))


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def run_queries(search: Search, data: dict[str, Any], k: int) -> tuple[list[float], np.ndarray]:
    """Warm up, then time ``search(query, allowed)`` per query; (ms per query, item ids [q, k])."""
    for q, s in zip(*data["warm"], strict=True):
        search(q, s)
    queries, sets = data["timed"]
    ms: list[float] = []
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, (q, s) in enumerate(zip(queries, sets, strict=True)):
        t0 = time.perf_counter()
        ids = search(q, s)
        ms.append((time.perf_counter() - t0) * 1000.0)
        out[i] = ids
    return ms, out


def latency(ms: list[float], prefix: str) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        f"{prefix}_p50_ms": round(float(np.percentile(a, 50)), 3),
        f"{prefix}_p99_ms": round(float(np.percentile(a, 99)), 3),
        f"{prefix}_mean_ms": round(float(a.mean()), 3),
    }


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    hits = total = 0
    for g, t in zip(got, truth, strict=True):
        t = t[t >= 0]
        hits += int(np.isin(t, g[g >= 0]).sum())
        total += t.size
    return round(hits / max(total, 1), 4)


def check_allowed(label: str, ids: np.ndarray, data: dict[str, Any]) -> None:
    """Abort when a returned item belongs to an advertiser outside its query's set."""
    for i, (row, allowed) in enumerate(zip(ids, data["timed"][1], strict=True)):
        found = row[row >= 0]
        bad = ~np.isin(data["adv_by_item"][found], allowed)
        if bad.any():
            raise RuntimeError(
                f"{label}: query {i} returned item(s) {found[bad][:5].tolist()} of advertisers "
                f"outside its allowed set"
            )


def filtered_row(
    index: Any, data: dict[str, Any], k: int, truth: np.ndarray | None, label: str, **override: Any
) -> tuple[dict[str, Any], np.ndarray]:
    """Time the restricted search; recall against ``truth`` (itself when None)."""
    ms, ids = run_queries(lambda q, s: index.search_advertisers(q, s, k, **override)[1], data, k)
    check_allowed(label, ids, data)
    row = {
        **latency(ms, "f"),
        "recall": recall(ids, ids if truth is None else truth),
        "full_rows": round(float((ids >= 0).all(axis=1).mean()), 3),
        "returned_mean": round(float((ids >= 0).sum(axis=1).mean()), 1),
    }
    return row, ids


def unrestricted_row(
    index: Any, data: dict[str, Any], k: int, truth: np.ndarray | None, **override: Any
) -> tuple[dict[str, Any], np.ndarray]:
    ms, ids = run_queries(lambda q, _s: index.search(q, k, **override)[1], data, k)
    return {**latency(ms, "u"), "u_recall": recall(ids, ids if truth is None else truth)}, ids


def build(data: dict[str, Any], cfg: Any, search_threads: int) -> tuple[Any, float]:
    """The index (its config switched to the search threads afterwards) and its memory in MiB."""
    from retrieval.index import ItemIndex

    gc.collect()
    index = ItemIndex(data["item_ids"], data["advs"], data["vectors"], cfg)
    index.config.threads = search_threads
    return index, round(sum(index.memory_bytes().values()) / MIB, 1)


def bench_size(n: int, args: argparse.Namespace, report: dict[str, Any]) -> None:
    from retrieval.index_config import IndexConfig

    t_size = time.perf_counter()
    t0 = time.perf_counter()
    data = make_data(n, args)
    stats = {**data["stats"], "data_s": round(time.perf_counter() - t0, 2)}
    log.info("[%d] data in %.1f s: %s", n, stats["data_s"], data["stats"])
    k = args.k
    common = {"items": n, "k": k}

    def add(
        name: str, filt: str, param: str, index: Any, build_key: str, mib: float, *parts: dict[str, Any]
    ) -> None:
        """One report row of ``parts`` (search columns). ``index``, None but on an index's first row, fills
        the build columns: its ``build_key`` build time, ``mib`` and every build time."""
        built = index is not None
        row = {
            "index": name,
            "filter": filt,
            "param": param,
            "build_s": index.build_seconds[build_key] if built else None,
            "index_mib": mib if built else None,
            **{key: v for part in parts for key, v in part.items()},
            "build": dict(index.build_seconds) if built else None,
        }
        report["rows"].append({**common, **row})
        log.info("[%d] %s", n, {key: v for key, v in row.items() if key != "build"})

    base = {
        "threads": args.build_threads or report["header"]["machine"]["faiss_default_threads"],
        "seed": args.seed,
    }
    st = args.search_threads

    # 1. Exact reference: flat + bitmap selector.
    index, mib = build(data, IndexConfig(kind="flat", filter="selector", **base), st)
    frow, truth = filtered_row(index, data, k, None, "flat")
    urow, utruth = unrestricted_row(index, data, k, None)
    add("flat (exact)", "selector bitmap", "–", index, "main", mib, frow, urow)
    del index
    gc.collect()

    # 2. Partitions: one exact flat index per advertiser.
    index, mib = build(data, IndexConfig(kind="flat", filter="partition", **base), st)
    frow, _ = filtered_row(index, data, k, truth, "partition")
    add("per-advertiser flat", "partition", "–", index, "partitions", mib, frow)
    del index
    gc.collect()

    # 3. IVF and HNSW with a selector, over their search settings.
    for kind, name, values, key in (
        ("ivf", "nprobe", args.nprobe, "nprobe"),
        ("hnsw", "efSearch", args.ef_search, "ef_search"),
    ):
        cfg = IndexConfig(
            kind=kind,
            filter="selector",
            selector=args.selectors[0],
            nlist=args.nlist,
            hnsw_m=args.hnsw_m,
            ef_construction=args.ef_construction,
            **base,
        )
        log.info("[%d] building %s ...", n, kind)
        index, mib = build(data, cfg, st)
        log.info("[%d] %s built in %.1f s", n, kind, index.build_seconds["main"])
        extra = f"nlist {index.nlist}" if kind == "ivf" else f"M {args.hnsw_m}, efC {args.ef_construction}"
        first = True
        for v in values:
            urow, _ = unrestricted_row(index, data, k, utruth, **{key: v})
            for sel in args.selectors:
                index.config.selector = sel
                frow, _ = filtered_row(index, data, k, truth, f"{kind} {sel} {name}={v}", **{key: v})
                add(
                    f"{kind} ({extra})",
                    f"selector {sel}",
                    f"{name} {v}",
                    index if first else None,
                    "main",
                    mib,
                    frow,
                    urow,
                )
                first = False
            index.config.selector = args.selectors[0]
        del index
        gc.collect()

    stats["peak_rss_mib"] = peak_rss_mib()
    stats["size_s"] = round(time.perf_counter() - t_size, 1)
    report["sizes"].append(stats)
    log.info("[%d] done in %.1f s, peak RSS %.0f MiB", n, stats["size_s"], stats["peak_rss_mib"])


def _versions() -> dict[str, Any]:
    import faiss

    return {
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "faiss_default_threads": faiss.omp_get_max_threads(),
    }


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_ints, default=[100_000, 1_000_000], help="item counts, comma-separated")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--clusters", type=int, default=1000, help="Gaussian mixture components")
    ap.add_argument("--spread", type=float, default=0.6, help="noise norm around a unit centre")
    ap.add_argument("--advertisers", type=int, default=5000)
    ap.add_argument("--zipf", type=float, default=0.8, help="advertiser skew: P(rank r) ∝ 1 / r^zipf")
    ap.add_argument("--allowed", type=int, default=20, help="allowed (LLM-predicted) advertisers per query")
    ap.add_argument("--queries", type=int, default=500, help="timed queries per row")
    ap.add_argument("--warmup", type=int, default=20, help="untimed queries before each row")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--nlist", type=int, default=0, help="IVF lists; 0 = round(sqrt(N))")
    ap.add_argument("--nprobe", type=_ints, default=[16, 64, 256], help="IVF settings, comma-separated")
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=80)
    ap.add_argument(
        "--ef-search", type=_ints, default=[128, 512, 2048], help="HNSW settings, comma-separated"
    )
    ap.add_argument(
        "--selectors",
        type=_selectors,
        default=["bitmap"],
        help="IDSelector kinds for the IVF/HNSW rows: bitmap, batch or bitmap,batch",
    )
    ap.add_argument(
        "--build-threads", type=int, default=0, help="faiss OpenMP threads for builds; 0 = default"
    )
    ap.add_argument("--search-threads", type=int, default=1, help="faiss OpenMP threads for searches")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="bench/results/retrieval.json")
    ap.add_argument("--md", default="bench/results/retrieval.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.allowed > args.advertisers:
        ap.error("--allowed exceeds --advertisers")
    if args.build_threads < 0 or args.search_threads < 1:
        ap.error("--build-threads must be >= 0 and --search-threads >= 1")

    report: dict[str, Any] = {
        "header": header(_versions()),
        "params": {k: v for k, v in vars(args).items() if k not in ("json", "md")},
        "rows": [],
        "sizes": [],
    }
    t0 = time.perf_counter()
    for n in sorted(args.sizes):
        bench_size(n, args, report)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    write_report(report, markdown(report), args.json, args.md)
    print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
