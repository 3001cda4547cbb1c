"""Benchmark of Spark example compilation (llm_predictor/data/compile.py) at two (or more) world sizes.

For each size a world is simulated first (not timed; all worlds before Spark starts, so that the
simulator's worker processes never fork a process that holds a JVM gateway). Then ONE Spark session
is created, one untimed warm-up compile runs on the smallest world (JVM start-up, class loading and
code generation are not counted), and ``compile_examples`` is timed on each world in turn with
``tokenizer=None`` (no prompt-length pass). The report gives the events in the input, seconds,
events/s, examples written, and, relative to the smallest size, the ratio of sizes, the ratio of
times and the scaling exponent log(time ratio) / log(size ratio): 1.0 is linear, < 1 is sublinear
(fixed per-job overheads still dominate), > 1 is superlinear.

The default sizes give about 100k and 1M events (the simulator makes ~139 events per user over
its default 120 days). Usage (from the repository root)::

    .venv/bin/python bench/compile.py --users 720 7200
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import shutil
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, table_lines, write_report  # noqa: E402

log = logging.getLogger("bench.compile")
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------


class TreeRss:
    """Context manager: max over polls of the summed RSS of this process and its descendants (JVM)."""

    def __init__(self, every: float = 0.5) -> None:
        self.every, self.peak = every, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            with contextlib.suppress(psutil.Error):
                for p in [me, *me.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.every)

    def __enter__(self) -> TreeRss:
        try:
            import psutil  # noqa: F401
        except ImportError:
            return self
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def peak_mib(self) -> float | None:
        return round(self.peak / MIB, 1) if self._thread is not None else None


def count_events(data: Path, anchors: list[date], cfg) -> tuple[int, int]:
    """(all events, events in the dt windows compile_day reads, summed over anchor dates)."""
    import pyarrow.dataset as pads

    from world.schema import RawLayout

    ds = pads.dataset(RawLayout(data).table("events"), format="parquet", partitioning="hive")
    total = ds.count_rows()
    longest = cfg.longest_lookback_days()
    read = 0
    for x in anchors:  # the same window as compile_day: dt in [x - longest - 1, x + label_days + 1]
        lo = (x - timedelta(days=longest + 1)).isoformat()
        hi = (x + timedelta(days=cfg.label_days + 1)).isoformat()
        read += ds.count_rows(filter=(pads.field("dt") >= lo) & (pads.field("dt") <= hi))
    return total, read


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

COLUMNS = [
    ("users", "users"),
    ("events_total", "events (all)"),
    ("events_read", "events read"),
    ("seconds", "compile s"),
    ("events_per_s", "events/s"),
    ("examples", "examples"),
    ("labelled", "labelled"),
    ("size_ratio", "size ratio"),
    ("time_ratio", "time ratio"),
    ("scaling_exponent", "exponent"),
    ("peak_tree_rss_mib", "peak RSS MiB"),
    ("output_mib", "output MiB"),
]


def markdown(report: dict) -> str:
    h, p = report["header"], report["params"]
    lines = [
        "# Example compilation benchmark",
        "",
        *header_lines(h),
        f"- Spark: master {p['master']}, driver memory {p['driver_memory']}, shuffle partitions "
        f"{p['shuffle_partitions']}; anchor dates {', '.join(p['dates'])}; world: {p['days']} days, "
        f"{p['advertisers']} advertisers, seed {p['seed']}",
        f"- warm-up (untimed) on {report['warmup']['users']} users: {report['warmup']['seconds']} s; "
        f"Spark session start-up (untimed): {report['spark_startup_s']} s",
        "",
        "compile s = wall time of one `compile_examples` call (all anchor dates, summary included, no "
        "tokenizer) in a warm shared Spark session. events read = rows of `events` in the dt windows "
        "compile reads (summed over anchor dates); events/s uses events read. Ratios are against the "
        "smallest size (by events read); exponent = log(time ratio) / log(size ratio), 1.0 = linear. "
        "peak RSS = max of the summed RSS of this process and the Spark JVM during the timed call "
        "(psutil, polled every 0.5 s).",
        "",
        *table_lines(COLUMNS, report["results"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--users",
        type=int,
        nargs="+",
        default=[720, 7200],
        help="world sizes in users (defaults: ~100k and ~1M events)",
    )
    ap.add_argument("--dates", nargs="+", default=["2026-06-22"], help="anchor dates (YYYY-MM-DD)")
    ap.add_argument("--days", type=int, default=120, help="WorldConfig.days")
    ap.add_argument("--advertisers", type=int, default=300, help="WorldConfig.advertisers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sim-workers", type=int, default=2, help="simulator processes (untimed step)")
    ap.add_argument("--master", default="local[2]", help="Spark master")
    ap.add_argument("--driver-memory", default="4g")
    ap.add_argument("--shuffle-partitions", type=int, default=8)
    ap.add_argument("--work-dir", default="/tmp/adprior-bench-compile", help="worlds and compiled examples")
    ap.add_argument("--keep", action="store_true", help="keep worlds and outputs (default: delete)")
    ap.add_argument("--json", default="bench/results/compile.json")
    ap.add_argument("--md", default="bench/results/compile.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("py4j", "world.simulate", "llm_predictor.data.compile"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from adprior.io import SparkConfig, get_spark
    from llm_predictor.data.compile import CompileConfig, compile_examples
    from world.config import WorldConfig
    from world.simulate import simulate

    anchors = [date.fromisoformat(d) for d in args.dates]
    sizes = sorted(set(args.users))
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    spark_cfg = SparkConfig(
        master=args.master, driver_memory=args.driver_memory, shuffle_partitions=args.shuffle_partitions
    )

    def ccfg(users: int, out: Path) -> CompileConfig:
        return CompileConfig(
            data=work / f"world-{users}", out=out, anchor_dates=anchors, tokenizer=None, spark=spark_cfg
        )

    report: dict = {
        "header": header(),
        "params": {
            "dates": args.dates,
            "days": args.days,
            "advertisers": args.advertisers,
            "seed": args.seed,
            "master": args.master,
            "driver_memory": args.driver_memory,
            "shuffle_partitions": args.shuffle_partitions,
        },
        "results": [],
    }

    # 1. Worlds (untimed), before any JVM exists.
    worlds: dict[int, dict] = {}
    for i, users in enumerate(sizes, 1):
        log.info("[simulate %d/%d] %d users ...", i, len(sizes), users)
        wcfg = WorldConfig(
            out=work / f"world-{users}",
            users=users,
            advertisers=args.advertisers,
            days=args.days,
            seed=args.seed,
            workers=args.sim_workers,
        )
        s = simulate(wcfg)
        total, read = count_events(wcfg.out, anchors, ccfg(users, work / "unused"))
        worlds[users] = {"events_total": total, "events_read": read, "simulate_s": s["seconds"]}
        log.info(
            "[simulate %d/%d] %d users: %d events (%d in the compile windows), %.1f s",
            i,
            len(sizes),
            users,
            total,
            read,
            s["seconds"],
        )

    # 2. One Spark session, one untimed warm-up on the smallest world.
    t0 = time.perf_counter()
    spark = get_spark(spark_cfg)
    report["spark_startup_s"] = round(time.perf_counter() - t0, 2)
    log.info("Spark session up in %.1f s (%s)", report["spark_startup_s"], args.master)
    warm_out = work / f"warmup-{sizes[0]}"
    t0 = time.perf_counter()
    compile_examples(ccfg(sizes[0], warm_out), spark=spark)
    report["warmup"] = {"users": sizes[0], "seconds": round(time.perf_counter() - t0, 2)}
    log.info("warm-up compile on %d users: %.1f s (untimed)", sizes[0], report["warmup"]["seconds"])
    shutil.rmtree(warm_out, ignore_errors=True)

    # 3. Timed compiles.
    base = None
    try:
        for i, users in enumerate(sizes, 1):
            out = work / f"examples-{users}"
            shutil.rmtree(out, ignore_errors=True)
            log.info(
                "[compile %d/%d] %d users, %d events read ...",
                i,
                len(sizes),
                users,
                worlds[users]["events_read"],
            )
            with TreeRss() as mem:
                t0 = time.perf_counter()
                summary = compile_examples(ccfg(users, out), spark=spark)
                seconds = time.perf_counter() - t0
            dates = summary["dates"].values()
            row = {
                "users": users,
                **worlds[users],
                "seconds": round(seconds, 2),
                "events_per_s": round(worlds[users]["events_read"] / seconds, 1),
                "examples": sum(d["sets"]["V1"]["users"] for d in dates),
                "labelled": sum(d["sets"]["V1"]["labelled"] for d in dates),
                "v0_examples": sum(d["sets"]["V0"]["users"] for d in dates),
                "peak_tree_rss_mib": mem.peak_mib,
                "output_mib": round(du(out) / MIB, 2),
            }
            if base is None:
                base = row
            size_ratio = row["events_read"] / max(1, base["events_read"])
            time_ratio = row["seconds"] / base["seconds"]
            row["size_ratio"] = round(size_ratio, 2)
            row["time_ratio"] = round(time_ratio, 2)
            row["scaling_exponent"] = (
                round(math.log(time_ratio) / math.log(size_ratio), 3) if size_ratio > 1 else None
            )
            log.info(
                "[compile %d/%d] %d users: %.1f s, %.0f events/s, %d examples (%d labelled); "
                "size x%.2f time x%.2f",
                i,
                len(sizes),
                users,
                seconds,
                row["events_per_s"],
                row["examples"],
                row["labelled"],
                size_ratio,
                time_ratio,
            )
            report["results"].append(row)
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
    finally:
        spark.stop()
        if not args.keep:
            for users in sizes:
                shutil.rmtree(work / f"world-{users}", ignore_errors=True)
                shutil.rmtree(work / f"world-{users}_truth", ignore_errors=True)

    write_report(report, markdown(report), args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
