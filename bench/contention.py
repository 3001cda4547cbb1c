"""Benchmark of batch inference alone and next to a busy neighbour (issue 19 item 2: a shared machine).

The same ``adprior infer`` command (the nightly's inference stage: the Ray runner, vLLM, the default
model, the answer grammar) runs on the same ``--users`` users of one anchor date, each time into a fresh
work folder and Feast repo, in three scenarios:

* ``alone``: nothing else runs;
* ``contended``: one busy neighbour (a Python process spinning on one core, started 3 s before, so it is
  there when the stage measures its free cores) — what adprior does today: threads sized to the free
  cores (``adprior/threads.py``) and idle OpenMP threads that sleep (``OMP_WAIT_POLICY=PASSIVE``);
* ``contended-2threads``: the same neighbour, with what adprior did before issue 19: as many compute
  threads as cores (``ADPRIOR_THREADS=<cores>``) and OpenMP's default active wait
  (``OMP_WAIT_POLICY=ACTIVE``).

Reported per run: the wall time of the command (Ray, engine start and all), the inference time and
users/s from the run's own summary (``_SUCCESS.json``), the thread count the stage chose (``threads`` in that summary),
and the slowdown = alone users/s / this run's users/s (issue 19: at most ~2x next to one busy process).

Usage (from the repository root; examples and raw tables of a compiled night, e.g. the README nightly's)::

    .venv/bin/python bench/contention.py --examples runs/nightly/examples --data runs/nightly/world \\
        --date 2026-06-22 --users 16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, table_lines, write_report  # noqa: E402

log = logging.getLogger("bench.contention")
SCENARIOS = ("alone", "contended", "contended-2threads")
SPIN = "while True:\n    pass\n"  # the neighbour: one core busy, nothing else


def scenario_env(name: str, cores: int) -> dict[str, str]:
    """The environment of one scenario's ``adprior infer`` (the caller's, minus any thread settings)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ADPRIOR_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")
    }
    if name == "contended-2threads":
        env.update(ADPRIOR_THREADS=str(cores), OMP_WAIT_POLICY="ACTIVE")
    return env


def run_once(name: str, args: argparse.Namespace, work: Path, cores: int) -> dict[str, Any]:
    """One ``adprior infer`` run of scenario ``name`` into ``work``; its wall time, summary and threads."""
    cmd = [
        str(ROOT / ".venv/bin/adprior"),
        "infer",
        "--examples", str(args.examples),
        "--data", str(args.data),
        "--date", args.date,
        "--work", str(work / "infer"),
        "--repo", str(work / "repo"),
        "--model", args.model,
        "--limit-users", str(args.users),
    ]  # fmt: skip
    neighbour = None
    if name != "alone":
        neighbour = subprocess.Popen([sys.executable, "-c", SPIN])
        time.sleep(3.0)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, env=scenario_env(name, cores), capture_output=True, text=True, cwd=ROOT)
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{name}: adprior infer exited {res.returncode}:\n{res.stderr[-3000:]}")
    summary = json.loads(next((work / "infer").rglob("_SUCCESS.json")).read_text())
    return {
        "scenario": name,
        "load_at_start": round(load, 2),
        "wall_s": round(wall, 1),
        "infer_s": summary["infer_seconds"],
        "users": summary["users_run_now"],
        "users_per_s": summary["users_per_second"],
        "threads": max(summary["threads"], default=None),  # what the workers chose (adprior/threads.py)
        "status_ok": summary["status"].get("ok", 0),
    }


def markdown(report: dict[str, Any]) -> str:
    cols = [
        ("scenario", "scenario"),
        ("repeat", "repeat"),
        ("load_at_start", "load at start"),
        ("threads", "threads"),
        ("users", "users"),
        ("status_ok", "ok"),
        ("wall_s", "wall s"),
        ("infer_s", "inference s"),
        ("users_per_s", "users/s"),
        ("slowdown", "slowdown vs alone"),
    ]
    return "\n".join(
        [
            "# Inference alone and next to a busy neighbour (issue 19 item 2)",
            "",
            *header_lines(report["header"]),
            f"- run: `adprior infer --limit-users {report['users']}` of {report['date']} "
            f"(examples `{report['examples']}`, model `{report['model']}`; Ray runner, vLLM), a fresh work "
            "folder and repo per run; neighbour = one Python process spinning on one core",
            "",
            "wall s = the whole command (Ray and vLLM start-up included); inference s and users/s from the "
            "run's `_SUCCESS.json`; threads = what the stage chose (`threads` of `_SUCCESS.json`, from `adprior/threads.py`; the "
            "2-thread scenario forces `ADPRIOR_THREADS` and `OMP_WAIT_POLICY=ACTIVE`, what ran before issue "
            "19); slowdown = the mean alone users/s over this run's.",
            "",
            *table_lines(cols, report["runs"]),
            "",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=Path, required=True, help="compiled examples folder")
    ap.add_argument("--data", type=Path, required=True, help="raw-table root")
    ap.add_argument("--date", required=True, help="anchor date to infer")
    ap.add_argument("--users", type=int, default=16, help="users per run (--limit-users)")
    ap.add_argument("--model", default="default", help="--model of adprior infer")
    ap.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    ap.add_argument("--repeats", type=int, default=1, help="runs per scenario (interleaved)")
    ap.add_argument("--json", default="bench/results/contention.json")
    ap.add_argument("--md", default="bench/results/contention.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cores = len(os.sched_getaffinity(0))
    report: dict[str, Any] = {
        "header": header(),
        "users": args.users,
        "date": args.date,
        "examples": str(args.examples),
        "model": args.model,
        "runs": [],
    }
    for rep in range(args.repeats):
        for name in args.scenarios:
            work = Path(tempfile.mkdtemp(prefix=f"contention-{name}-"))
            try:
                log.info("run %d/%d: %s", rep + 1, args.repeats, name)
                row = run_once(name, args, work, cores)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            row["repeat"] = rep + 1
            log.info("%s", row)
            report["runs"].append(row)
    alone = [r["users_per_s"] for r in report["runs"] if r["scenario"] == "alone"]
    base = sum(alone) / len(alone) if alone else None
    for r in report["runs"]:
        r["slowdown"] = round(base / r["users_per_s"], 2) if base and r["users_per_s"] else None
    write_report(report, markdown(report), args.json, args.md)


if __name__ == "__main__":
    main()
