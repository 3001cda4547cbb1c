"""Benchmark of the world simulator (world/simulate.py): time, throughput, peak memory, disk.

Each size runs in a *fresh* Python process (this script re-invoked with ``--child``), so that the
peak memory of one size is not inflated by an earlier one and interpreter start-up is the same for
every size. Two memory numbers are reported:

* ``peak_tree_rss_mib``: the parent polls the child every ``--poll`` seconds with psutil and sums
  the RSS of the child and all its descendants (the ``--workers`` pool processes); the maximum of
  that sum. Polling can miss a short spike, and shared pages are counted once per process.
* ``max_single_rss_mib``: the largest ``ru_maxrss`` of any single process of the tree (the child's
  own RUSAGE_SELF and RUSAGE_CHILDREN for its reaped workers), exact but not a sum.

Usage (from the repository root)::

    .venv/bin/python bench/simulate.py --users 10000 100000 --workers 2

Writes ``--json`` (all numbers) and ``--md`` (a table headed by the command line, git commit and
machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, table_lines, write_report  # noqa: E402

log = logging.getLogger("bench.simulate")
MIB = 1024 * 1024


def du(path: Path) -> int:
    """Bytes of all files under ``path`` (0 if missing)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# Child: one simulation in this fresh process
# ---------------------------------------------------------------------------------------------


def child(spec: dict) -> None:
    """Run one simulation and write its summary and own rusage to spec['result']."""
    from world.config import WorldConfig
    from world.simulate import simulate

    cfg = WorldConfig(
        out=Path(spec["out"]),
        users=spec["users"],
        advertisers=spec["advertisers"],
        days=spec["days"],
        seed=spec["seed"],
        chunk_users=spec["chunk_users"],
        workers=spec["workers"],
    )
    t0 = time.perf_counter()
    summary = simulate(cfg)
    seconds = time.perf_counter() - t0
    # ru_maxrss is KiB on Linux (bytes on macOS).
    unit = 1 if sys.platform == "darwin" else 1024
    self_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    children_max = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit
    Path(spec["result"]).write_text(
        json.dumps(
            {
                "summary": summary,
                "simulate_s": seconds,
                "self_maxrss": self_max,
                "children_maxrss": children_max,
            }
        )
    )


# ---------------------------------------------------------------------------------------------
# Parent: spawn, poll, collect
# ---------------------------------------------------------------------------------------------


def tree_rss(proc) -> int:
    """Summed RSS in bytes of a psutil.Process and all its descendants (0 if it is gone)."""
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_size(args: argparse.Namespace, users: int) -> dict:
    out = Path(args.out_dir) / f"world-{users}"
    result = Path(args.out_dir) / f"result-{users}.json"
    result.parent.mkdir(parents=True, exist_ok=True)
    result.unlink(missing_ok=True)
    spec = {
        "out": str(out),
        "users": users,
        "advertisers": args.advertisers,
        "days": args.days,
        "seed": args.seed,
        "chunk_users": args.chunk_users,
        "workers": args.workers,
        "result": str(result),
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    try:
        import psutil
    except ImportError:
        psutil = None
        log.warning("psutil missing: peak_tree_rss_mib not measured (pip install psutil)")
    peak = 0
    t0 = time.perf_counter()
    child_log = Path(args.out_dir) / f"log-{users}.txt"
    with child_log.open("w") as fh:  # a file, not a pipe: a chatty child can never block on a full pipe
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid) if psutil else None
        while proc.poll() is None:
            if ps is not None:
                peak = max(peak, tree_rss(ps))
            time.sleep(args.poll)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = child_log.read_text()[-4000:]
        raise RuntimeError(
            f"simulation of {users} users failed (exit {proc.returncode}), log {child_log}:\n{tail}"
        )
    child_log.unlink(missing_ok=True)
    res = json.loads(result.read_text())
    summary = res["summary"]
    data_bytes, truth_bytes = du(out), du(Path(str(out) + "_truth"))
    row = {
        "users": users,
        "advertisers": summary["advertisers"],
        "days": summary["days"],
        "workers": args.workers,
        "chunk_users": args.chunk_users,
        "events": summary["events"],
        "wall_s": round(wall, 2),
        "simulate_s": round(res["simulate_s"], 2),
        "users_per_s": round(users / wall, 1),
        "events_per_s": round(summary["events"] / wall, 1),
        "peak_tree_rss_mib": round(peak / MIB, 1) if psutil else None,
        "max_single_rss_mib": round(max(res["self_maxrss"], res["children_maxrss"]) / MIB, 1),
        "data_bytes": data_bytes,
        "truth_bytes": truth_bytes,
        "data_mib": round(data_bytes / MIB, 1),
        "truth_mib": round(truth_bytes / MIB, 1),
        "bytes_per_event": round(data_bytes / max(1, summary["events"]), 1),
    }
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(Path(str(out) + "_truth"), ignore_errors=True)
    result.unlink(missing_ok=True)
    return row


COLUMNS = [
    ("users", "users"),
    ("events", "events"),
    ("workers", "workers"),
    ("chunk_users", "chunk"),
    ("wall_s", "wall s"),
    ("simulate_s", "simulate() s"),
    ("users_per_s", "users/s"),
    ("events_per_s", "events/s"),
    ("peak_tree_rss_mib", "peak tree RSS MiB"),
    ("max_single_rss_mib", "max 1-proc RSS MiB"),
    ("data_mib", "data MiB"),
    ("truth_mib", "truth MiB"),
    ("bytes_per_event", "bytes/event"),
]


def markdown(report: dict) -> str:
    h = report["header"]
    lines = [
        "# Simulator benchmark",
        "",
        *header_lines(h),
        f"- world: {report['params']['advertisers']} advertisers, {report['params']['days']} days, "
        f"seed {report['params']['seed']}",
        "",
        "Each size runs in a fresh Python process. wall s = the whole process (interpreter start-up and "
        "imports included); users/s and events/s are over wall s. "
        f"peak tree RSS = max over psutil polls every {report['params']['poll']} s of the summed RSS of the "
        "process and its descendants (the worker pool); max 1-proc RSS = the largest ru_maxrss of any single "
        "process in the tree. data/truth MiB = bytes on disk of the raw tables / the ground truth.",
        "",
        *table_lines(COLUMNS, report["results"], missing="n/a"),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, nargs="+", default=[10000, 100000], help="world sizes (users)")
    ap.add_argument("--workers", type=int, default=2, help="WorldConfig.workers")
    ap.add_argument("--chunk-users", type=int, default=2000, help="WorldConfig.chunk_users")
    ap.add_argument("--advertisers", type=int, default=300, help="WorldConfig.advertisers")
    ap.add_argument("--days", type=int, default=120, help="WorldConfig.days")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between RSS polls")
    ap.add_argument("--out-dir", default="/tmp/adprior-bench", help="where the worlds are written")
    ap.add_argument("--keep", action="store_true", help="keep the simulated worlds (default: delete)")
    ap.add_argument("--json", default="bench/results/simulate.json")
    ap.add_argument("--md", default="bench/results/simulate.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = {
        "header": header(),
        "params": {
            k: getattr(args, k) for k in ("workers", "chunk_users", "advertisers", "days", "seed", "poll")
        },
        "memory_method": {
            "peak_tree_rss_mib": f"psutil poll every {args.poll}s, max of summed RSS of the process tree",
            "max_single_rss_mib": "max ru_maxrss (RUSAGE_SELF, RUSAGE_CHILDREN) of any single process",
        },
        "results": [],
    }
    for i, users in enumerate(args.users, 1):
        log.info(
            "[%d/%d] simulating %d users (workers=%d) in a fresh process ...",
            i,
            len(args.users),
            users,
            args.workers,
        )
        row = run_size(args, users)
        log.info(
            "[%d/%d] %d users: %d events in %.1f s (%.0f events/s), peak tree RSS %s MiB, data %.1f MiB",
            i,
            len(args.users),
            users,
            row["events"],
            row["wall_s"],
            row["events_per_s"],
            row["peak_tree_rss_mib"],
            row["data_mib"],
        )
        report["results"].append(row)
    write_report(report, markdown(report), args.json, args.md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
