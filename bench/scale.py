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
   the real base model (EngineConfig defaults: transformers, constrained greedy, max_new_tokens 256),
   user budget 256 tokens, shard size 32, runner ``--runner``: a *sampled* inference of a fixed number
   of users, so its growth shows what the selection and planning around the model cost.
5. ``materialize``: ``adprior.store.apply`` + ``adprior.store.materialize(end=event_timestamp(x) + 1 s)``
   into the SQLite online store (every view with offline rows: user_profile, user_behavior,
   advertiser_stats, llm_predictions).

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

Usage (from the repository root)::

    .venv/bin/python bench/scale.py                                   # 100,000 and 1,000,000 users
    .venv/bin/python bench/scale.py --users 2000,10000 --infer-users 8 --json /tmp/scale.json --md /tmp/scale.md
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import header, header_lines, table_lines, write_report  # noqa: E402

log = logging.getLogger("bench.scale")
MIB = 1024 * 1024
STAGES = ("simulate", "compile", "features", "infer", "materialize")
IMPRESSION_RATE = 0.6  # NightlyConfig.impression_rate
BUDGET_TOKENS = 256  # NightlyConfig.budget_tokens (CPU default)
SHARD_SIZE = 32  # NightlyConfig.shard_size


def du(path: Path) -> int:
    """Bytes of all files under ``path`` (0 if missing)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def anchor_day(seed: int) -> date:
    """The nightly default date: the simulated world's end - 8 days (labels exist)."""
    from world.simulate import WorldConfig

    return WorldConfig(out=Path("unused"), seed=seed).end_date - timedelta(days=8)


# ---------------------------------------------------------------------------------------------
# Stage processes
# ---------------------------------------------------------------------------------------------


def _paths(spec: dict) -> dict[str, Path]:
    w = Path(spec["work"])
    return {"data": w / "world", "examples": w / "examples", "repo": w / "feature_repo", "infer": w / "infer"}


def _store_cfg(spec: dict) -> Any:
    from adprior.store import StoreConfig

    return StoreConfig(repo=_paths(spec)["repo"], online="sqlite", offline="file")


def stage_simulate(spec: dict) -> dict:
    from world.simulate import WorldConfig, simulate

    p = _paths(spec)
    wc = WorldConfig(
        out=p["data"],
        users=spec["users"],
        seed=spec["seed"],
        workers=spec["workers"],
        impression_rate=IMPRESSION_RATE,
    )
    t0 = time.perf_counter()
    summary = simulate(wc)
    inner = time.perf_counter() - t0
    return {
        "inner_s": inner,
        "outputs": {
            "users": spec["users"],
            "events": summary["events"],
            "raw_mib": round(du(p["data"]) / MIB, 1),
        },
    }


def stage_compile(spec: dict) -> dict:
    from adprior.io import SparkConfig, get_spark
    from llm_predictor.data.compile import CompileConfig, compile_examples

    p, day = _paths(spec), date.fromisoformat(spec["day"])
    scfg = SparkConfig(master=spec["master"])
    t0 = time.perf_counter()
    spark = get_spark(scfg)
    t1 = time.perf_counter()
    comp = compile_examples(
        CompileConfig(
            data=p["data"],
            out=p["examples"],
            anchor_dates=[day],
            countries=("US",),
            spark=scfg,
            tokenizer=None,
        ),
        spark,
    )
    inner = time.perf_counter() - t1
    # Stop the session and wait for the JVM (the gateway's child) so that RUSAGE_CHILDREN counts it.
    gateway = getattr(spark.sparkContext, "_gateway", None)
    jvm = getattr(gateway, "proc", None)
    spark.stop()
    if jvm is not None:
        with contextlib.suppress(Exception):
            jvm.stdin.close()
        try:
            jvm.wait(timeout=60)
        except subprocess.TimeoutExpired:
            jvm.kill()
            jvm.wait()
    sets = comp["dates"][day.isoformat()]["sets"]
    return {
        "inner_s": inner,
        "spark_start_s": t1 - t0,
        "outputs": {
            "served_v1": sets["V1"]["users"],
            "served_v0": sets["V0"]["users"],
            "labelled_v1": sets["V1"]["labelled"],
            "examples_mib": round(du(p["examples"]) / MIB, 1),
        },
    }


def stage_features(spec: dict) -> dict:
    from adprior import store
    from llm_predictor.data.compile import load_examples

    p, day = _paths(spec), date.fromisoformat(spec["day"])
    cfg = _store_cfg(spec)
    store.init_repo(cfg.repo)
    t0 = time.perf_counter()
    examples = load_examples(p["examples"], day)
    counts = store.write_daily_features(cfg, p["data"], examples, day)
    inner = time.perf_counter() - t0
    return {
        "inner_s": inner,
        "outputs": {
            **counts,
            "examples_loaded": len(examples),
            "offline_mib": round(du(cfg.repo / "data" / "offline") / MIB, 1),
        },
    }


def stage_infer(spec: dict) -> dict:
    from adprior import store
    from llm_predictor.infer.engines import EngineConfig
    from llm_predictor.infer.shards import InferConfig, run_inference

    p, day = _paths(spec), date.fromisoformat(spec["day"])
    cfg = _store_cfg(spec)
    icfg = InferConfig(
        examples=p["examples"],
        day=day,
        predictions=store.offline_dir(cfg, "llm_predictions"),
        work=p["infer"],
        data=p["data"],
        engine=EngineConfig(),
        budget_tokens=BUDGET_TOKENS,
        shard_size=SHARD_SIZE,
        runner=spec["runner"],
        workers=1,
        cpus_per_worker=2.0,
        limit_users=spec["infer_users"],
    )
    t0 = time.perf_counter()
    inf = run_inference(icfg)
    inner = time.perf_counter() - t0
    keep = (
        "inferred",
        "users_run_now",
        "shards",
        "status",
        "infer_seconds",
        "users_per_second",
        "model_version",
    )
    counts = {k: v for k, v in inf.items() if isinstance(v, int) and k not in keep and k != "shards_resumed"}
    return {"inner_s": inner, "outputs": {**{k: inf.get(k) for k in keep}, **counts}}


def stage_materialize(spec: dict) -> dict:
    from adprior import store
    from llm_predictor.infer.shards import event_timestamp

    day = date.fromisoformat(spec["day"])
    cfg = _store_cfg(spec)
    t0 = time.perf_counter()
    store.apply(cfg)
    t1 = time.perf_counter()
    mat = store.materialize(cfg, end=event_timestamp(day) + timedelta(seconds=1))
    inner = time.perf_counter() - t1
    rows = {name: v.get("rows") for name, v in mat.get("views", {}).items()}
    return {
        "inner_s": inner,
        "apply_s": t1 - t0,
        "outputs": {
            "rows": sum(r for r in rows.values() if r),
            "rows_per_view": rows,
            **online_counts(cfg.repo / "data" / "online_store.db"),
        },
    }


def online_counts(db: Path) -> dict[str, Any]:
    """Rows in the SQLite online store (Feast: one per entity x feature) and its size on disk."""
    import sqlite3

    if not db.exists():
        return {"online_feature_rows": None, "online_mib": None}
    with contextlib.closing(sqlite3.connect(db)) as con:
        tables = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0].startswith("adprior_") and r[0] != "adprior_materialized"
        ]
        n = sum(con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)
    size = sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())  # + -wal, -journal
    return {"online_feature_rows": n, "online_mib": round(size / MIB, 2)}


STAGE_FUNCS = {
    "simulate": stage_simulate,
    "compile": stage_compile,
    "features": stage_features,
    "infer": stage_infer,
    "materialize": stage_materialize,
}


def run_stage_child(name: str, spec: dict) -> None:
    """Entry of ``--stage``: run one stage, write its numbers and own rusage to spec['result']."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    res = STAGE_FUNCS[name](spec)
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    res["self_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    res["children_maxrss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit
    Path(spec["result"]).write_text(json.dumps(res, default=str))


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
    try:
        for i, name in enumerate(STAGES, 1):
            log.info("[%d users] stage %d/%d %s ...", users, i, len(STAGES), name)
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


# ---------------------------------------------------------------------------------------------
# Growth and extrapolation
# ---------------------------------------------------------------------------------------------


def growth(results: list[dict]) -> list[dict]:
    """Per stage, between consecutive sizes: size ratio, time ratio, exponent b (t ~ N^b), memory ratio."""
    rows = []
    for a, b in itertools.pairwise(results):
        sa, sb = {r["stage"]: r for r in a["stages"]}, {r["stage"]: r for r in b["stages"]}
        size_ratio = b["users"] / a["users"]
        for name in STAGES:
            if name not in sa or name not in sb:
                continue
            ta, tb = sa[name]["seconds"], sb[name]["seconds"]
            ia, ib = sa[name]["inner_s"], sb[name]["inner_s"]
            ma, mb = sa[name]["peak_tree_rss_mib"], sb[name]["peak_tree_rss_mib"]
            rows.append(
                {
                    "from_users": a["users"],
                    "to_users": b["users"],
                    "stage": name,
                    "size_ratio": round(size_ratio, 2),
                    "time_ratio": round(tb / ta, 2) if ta else None,
                    "time_ratio_per_size_ratio": round(tb / ta / size_ratio, 3) if ta else None,
                    "exponent": round(math.log(tb / ta) / math.log(size_ratio), 2)
                    if ta and tb and size_ratio != 1
                    else None,
                    "inner_time_ratio": round(ib / ia, 2) if ia else None,
                    "inner_exponent": (
                        round(math.log(ib / ia) / math.log(size_ratio), 2)
                        if ia > 0 and ib > 0 and size_ratio != 1
                        else None
                    ),
                    "mem_ratio": round(mb / ma, 2) if ma else None,
                }
            )
    return rows


def extrapolate(results: list[dict], sizes: list[int]) -> list[dict]:
    """Estimate per stage from the last two complete sizes N1 < N2 with a fixed + per-user model.

    t(N) = a + c * N through the two points (c = per-user cost, clamped >= 0; a = fixed cost: start-up,
    model load, Spark start), the same for peak tree RSS. A power law through two small sizes would
    carry their fixed costs into the exponent and grossly underestimate large N; the affine model
    assumes every stage is at most linear in users beyond N2 (super-linear stages, e.g. a shuffle that
    spills, or memory that a chunked stage bounds, show only in a real measurement).
    """
    done = [r for r in results if r["failed"] is None and len(r["stages"]) == len(STAGES)]
    if len(done) < 2:
        return []
    a, b = done[-2], done[-1]
    sa, sb = {r["stage"]: r for r in a["stages"]}, {r["stage"]: r for r in b["stages"]}
    dn = b["users"] - a["users"]

    def affine(key: str, name: str, n: int) -> tuple[float, float, float]:
        y1, y2 = sa[name][key], sb[name][key]
        c = max(0.0, (y2 - y1) / dn)
        return y2 + c * (n - b["users"]), y2 - c * b["users"], c

    rows = []
    for n in sizes:
        if n <= b["users"]:
            continue
        total_s, peak_mem = 0.0, 0.0
        for name in STAGES:
            s, fixed_s, c_s = affine("seconds", name, n)
            m, _, c_m = affine("peak_tree_rss_mib", name, n)
            total_s += s
            peak_mem = max(peak_mem, m)
            rows.append(
                {
                    "users": n,
                    "stage": name,
                    "fixed_s": round(fixed_s, 1),
                    "ms_per_user": round(c_s * 1e3, 3),
                    "est_seconds": round(s, 1),
                    "est_minutes": round(s / 60, 1),
                    "kib_per_user": round(c_m * 1024, 3),
                    "est_peak_tree_rss_mib": round(m, 0),
                }
            )
        rows.append(
            {
                "users": n,
                "stage": "total",
                "est_seconds": round(total_s, 1),
                "est_minutes": round(total_s / 60, 1),
                "est_peak_tree_rss_mib": round(peak_mem, 0),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


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
    h, p = report["header"], report["params"]
    lines = [
        "# Nightly pipeline scale benchmark (time and peak memory per stage vs users)",
        "",
        *header_lines(h),
        f"- pipeline: world seed {p['seed']}, impression rate {IMPRESSION_RATE}, simulator workers {p['workers']}; "
        f"anchor date {p['day']} (world end - 8 days); Spark master `{p['master']}`; sampled inference of "
        f"{p['infer_users']} users (base model, EngineConfig defaults, budget {BUDGET_TOKENS} tokens, runner "
        f"`{p['runner']}`); Feast offline store = parquet files, online store = SQLite",
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
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
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
