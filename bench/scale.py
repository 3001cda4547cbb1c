"""Scale benchmark of the nightly pipeline (adprior/nightly.py): time and peak memory per stage vs users.

Issue "Production hardening", item 2. For each size N of ``--users`` the stages of
:func:`adprior.nightly.run_nightly` run one after another in a work folder ``--work/users-N``
(deleted afterwards unless ``--keep``), each in a *fresh* Python process (this script re-invoked with
``--stage``), so that every stage's peak memory is its own:

1. ``simulate``: ``world.simulate.simulate(WorldConfig(users=N, seed, workers=--workers,
   impression_rate=0.6))``, the world the nightly job simulates (raw tables under ``world/``).
2. ``compile``: ``llm_predictor.data.compile.compile_examples(CompileConfig(anchor_dates=[x], countries=US,
   spark=SparkConfig(master=--master), tokenizer=None))`` for one anchor date x = world end - 8 days
   (the nightly default); the SparkSession is created in the stage process and stopped at its end.
3. ``features``: ``load_examples(examples, x)`` + ``adprior.store.write_daily_features`` into a fresh
   Feast repo (``adprior.store.init_repo``; offline store = parquet folders).
4. ``infer``: ``llm_predictor.infer.shards.run_inference(InferConfig(limit_users=--infer-users, ...))`` with
   the nightly's engine and model (InferConfig's: vLLM in the worker's process, the shipped default model),
   user budget 256 tokens, shard size 32, runner ``--runner``: a *sampled* inference of a fixed number
   of users, so its growth shows what the selection and planning around the model cost.
5. ``materialize``: ``adprior.store.apply`` + ``adprior.store.materialize(end=event_timestamp(x) + 1 s)``
   into the SQLite online store (every view with offline rows: user_profile, user_behavior,
   advertiser_stats, llm_predictions) with the yaml's engine: ``adprior.store.engine.ArrowComputeEngine``
   (reports before it: Feast 0.67's local engine, e.g. 1,586.87 s and 11.4 GiB at 1M users).
6. ``--materialize-engines`` (default ``redis,spark-redis``): the same materialization with another
   engine or store, each into a fresh online store of a sibling repo over the same offline tables
   (``bench/scale_stages.py``): ``materialize-local`` (Feast's local engine, SQLite: the old stage 5),
   ``materialize-redis`` (the Arrow engine into a private redis-server, counted in the tree RSS),
   ``materialize-spark-redis`` (Feast's Spark offline store and compute engine, local[2], into Redis).

What is timed: ``s`` = wall time of the stage process as seen by this script (interpreter start-up and
imports included, e.g. torch for ``infer``, Feast for ``features``/``materialize``); ``inner s`` = the
library call(s) alone, timed inside the stage process. Memory, two numbers per stage:

* ``peak tree RSS``: this script polls the stage process every ``--poll`` s with psutil and sums the
  RSS of it and all its descendants (the simulator's worker pool, the Spark JVM, Ray's processes); the
  maximum of that sum. Polling can miss a short spike; shared pages count once per process.
* ``max 1-proc RSS``: the largest resident set of any single process of the tree: the stage process'
  own ``ru_maxrss``, ``ru_maxrss`` of its reaped children (the Spark JVM is waited for after
  ``spark.stop()`` so that it is counted), and the largest single RSS seen by the polls (for
  descendants that are not reaped by the stage process, e.g. Ray's daemons).

Stage outputs are recorded beside (users simulated, events, served users, features written per table,
users inferred, rows materialized per view). After all sizes, a growth table compares consecutive
sizes: time ratio / size ratio per stage, and the exponent b of t ~ N^b; the last two sizes give a
power-law extrapolation to ``--extrapolate`` sizes (an estimate, labelled as such).

A failing stage is recorded (stage, error, log tail); the remaining stages of that size are skipped,
the next size still runs, and the report is rewritten after every size.

The stages as they run in their process are in ``bench/scale_stages.py``; the growth table and the
extrapolation in ``bench/scale_growth.py``; the report in ``bench/scale_report.py``; this script
spawns, polls and collects.

Usage (from the repository root)::

    .venv/bin/python bench/scale.py                                   # 100,000 and 1,000,000 users
    .venv/bin/python bench/scale.py --users 2000,10000 --infer-users 8 --json /tmp/scale.json --md /tmp/scale.md
    .venv/bin/python bench/scale.py --materialize-engines local,redis,spark-redis  # + Feast's local engine
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, write_report  # noqa: E402
from bench.scale_growth import extrapolate, growth  # noqa: E402
from bench.scale_report import markdown, print_rich  # noqa: E402
from bench.scale_stages import (  # noqa: E402
    BUDGET_TOKENS,
    IMPRESSION_RATE,
    MATERIALIZE_VARIANTS,
    MIB,
    SHARD_SIZE,
    STAGES,
    anchor_day,
    du,
    run_stage_child,
)

log = logging.getLogger("bench.scale")


# ---------------------------------------------------------------------------------------------
# Parent: spawn, poll, collect
# ---------------------------------------------------------------------------------------------


def tree_rss(proc: Any) -> tuple[int, int]:
    """(summed RSS, largest single RSS) in bytes of a psutil.Process and its descendants."""
    import psutil

    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total = largest = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            rss = p.memory_info().rss
            total += rss
            largest = max(largest, rss)
    return total, largest


def run_stage(name: str, spec: dict, poll: float) -> dict:
    """Run one stage in a fresh process; its row (seconds, memory, outputs). Raises on failure."""
    import psutil

    work = Path(spec["work"])
    result, child_log = work / f"result-{name}.json", work / f"log-{name}.txt"
    result.unlink(missing_ok=True)
    spec = {**spec, "result": str(result)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", name, "--spec", json.dumps(spec)]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    peak_sum = peak_one = 0
    t0 = time.perf_counter()
    with child_log.open("w") as fh:  # a file, not a pipe: a chatty child can never block on a full pipe
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        ps = psutil.Process(proc.pid)
        last_note = t0
        while proc.poll() is None:
            s, one = tree_rss(ps)
            peak_sum, peak_one = max(peak_sum, s), max(peak_one, one)
            if time.perf_counter() - last_note > 60:
                last_note = time.perf_counter()
                log.info(
                    "  ... %s running %.0f s, tree RSS now %.0f MiB (peak %.0f)",
                    name,
                    last_note - t0,
                    s / MIB,
                    peak_sum / MIB,
                )
            time.sleep(poll)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not result.exists():
        tail = child_log.read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"stage {name} exited {proc.returncode} after {wall:.1f} s (log {child_log}):\n{tail}"
        )
    res = json.loads(result.read_text())
    row = {
        "stage": name,
        "seconds": round(wall, 2),
        "inner_s": round(res["inner_s"], 2),
        "peak_tree_rss_mib": round(peak_sum / MIB, 1),
        "max_proc_rss_mib": round(max(res["self_maxrss"], res["children_maxrss"], peak_one) / MIB, 1),
        "stage_proc_rss_mib": round(res["self_maxrss"] / MIB, 1),
        "children_rss_mib": round(res["children_maxrss"] / MIB, 1),
        "outputs": res["outputs"],
    }
    for k in ("spark_start_s", "apply_s"):
        if k in res:
            row[k] = round(res[k], 2)
    return row


def run_size(args: argparse.Namespace, users: int, day: date) -> dict:
    work = Path(args.work) / f"users-{users}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    spec = {
        "work": str(work.resolve()),
        "users": users,
        "seed": args.seed,
        "workers": args.workers,
        "master": args.master,
        "day": day.isoformat(),
        "infer_users": args.infer_users,
        "runner": args.runner,
    }
    out: dict[str, Any] = {"users": users, "stages": [], "failed": None}
    stages = [*STAGES, *(MATERIALIZE_VARIANTS[v] for v in args.materialize_engines)]
    try:
        for i, name in enumerate(stages, 1):
            log.info("[%d users] stage %d/%d %s ...", users, i, len(stages), name)
            try:
                row = run_stage(name, spec, args.poll)
            except Exception as exc:  # reported; the size stops here
                log.error("[%d users] stage %s failed: %s", users, name, exc)
                out["failed"] = {"stage": name, "error": str(exc)[-3000:]}
                break
            out["stages"].append(row)
            log.info(
                "[%d users] %s: %.1f s (inner %.1f s), peak tree RSS %.0f MiB, max 1-proc RSS %.0f MiB; %s",
                users,
                name,
                row["seconds"],
                row["inner_s"],
                row["peak_tree_rss_mib"],
                row["max_proc_rss_mib"],
                json.dumps(row["outputs"], default=str),
            )
    finally:
        out["disk_mib"] = round(du(work) / MIB, 1)
        if not args.keep and out["failed"] is None:
            shutil.rmtree(work, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", default="100000,1000000", help="comma-separated world sizes (users)")
    ap.add_argument("--work", default="runs/scale", help="work folder (one subfolder per size)")
    ap.add_argument("--keep", action="store_true", help="keep each size's work folder (default: delete)")
    ap.add_argument("--infer-users", type=int, default=32, help="users of the sampled inference")
    ap.add_argument(
        "--runner",
        choices=("local", "ray"),
        default="local",
        help="inference runner (the nightly default is ray; local avoids Ray's start-up)",
    )
    ap.add_argument("--workers", type=int, default=2, help="simulator worker processes")
    ap.add_argument("--master", default="local[2]", help="Spark master URL")
    ap.add_argument("--seed", type=int, default=7, help="world seed (the nightly default)")
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between RSS polls")
    ap.add_argument("--extrapolate", default="100000,1000000", help="sizes to estimate from the last two")
    ap.add_argument("--json", default="bench/results/scale.json")
    ap.add_argument("--md", default="bench/results/scale.md")
    ap.add_argument(
        "--materialize-engines",
        default="redis,spark-redis",
        help="extra materialize stages after the pipeline, comma-separated of "
        f"{sorted(MATERIALIZE_VARIANTS)} ('' = none; local = Feast's local engine, ~26 min at 1M users)",
    )
    ap.add_argument("--stage", choices=[*STAGES, *MATERIALIZE_VARIANTS.values()], help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.materialize_engines = [v.strip() for v in args.materialize_engines.split(",") if v.strip()]
    if unknown := set(args.materialize_engines) - set(MATERIALIZE_VARIANTS):
        ap.error(
            f"unknown --materialize-engines {sorted(unknown)}; choose from {sorted(MATERIALIZE_VARIANTS)}"
        )
    if args.stage:
        run_stage_child(args.stage, json.loads(args.spec))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    sizes = [int(x) for x in args.users.split(",") if x.strip()]
    day = anchor_day(args.seed)
    report: dict[str, Any] = {
        "header": header(),
        "params": {
            "users": sizes,
            "day": day.isoformat(),
            "infer_users": args.infer_users,
            "runner": args.runner,
            "workers": args.workers,
            "master": args.master,
            "seed": args.seed,
            "poll": args.poll,
            "impression_rate": IMPRESSION_RATE,
            "budget_tokens": BUDGET_TOKENS,
            "shard_size": SHARD_SIZE,
            "materialize_engines": args.materialize_engines,
        },
        "memory_method": {
            "peak_tree_rss_mib": f"psutil poll every {args.poll}s, max of summed RSS of the stage process tree",
            "max_proc_rss_mib": "max of ru_maxrss (RUSAGE_SELF, RUSAGE_CHILDREN incl. the reaped Spark JVM) of "
            "the stage process and the largest polled single-process RSS",
        },
        "results": [],
        "growth": [],
        "extrapolation": [],
    }
    failed = False
    for i, users in enumerate(sizes, 1):
        log.info(
            "=== [%d/%d] %d users (work %s) ===", i, len(sizes), users, Path(args.work) / f"users-{users}"
        )
        t0 = time.perf_counter()
        res = run_size(args, users, day)
        res["total_s"] = round(time.perf_counter() - t0, 2)
        report["results"].append(res)
        failed |= res["failed"] is not None
        report["growth"] = growth(report["results"])
        report["extrapolation"] = extrapolate(
            report["results"], [int(x) for x in args.extrapolate.split(",") if x.strip()]
        )
        log.info(
            "=== %d users done in %.1f s%s ===",
            users,
            res["total_s"],
            f" (FAILED at {res['failed']['stage']})" if res["failed"] else "",
        )
        print_rich(report)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(report, indent=2, default=str)
        )  # partial results survive a crash
    write_report(report, markdown(report), args.json, args.md)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
