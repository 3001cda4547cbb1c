"""Nightly batch inference: selected users -> prompts -> engine (on Ray Data) -> predictions table.

One run handles one inference date ``x`` (the anchor date of the compiled examples) and goes through
four steps, each of which leaves files under ``<work>/<x>/`` so that a run killed at any point resumes:

1.-2. **Select** the users to infer and **plan** their prompts and shards (a ``manifest.json`` that
   fingerprints inputs and configuration): :mod:`llm_predictor.infer.plan`, with
   :class:`~llm_predictor.infer.plan.InferConfig`, the run's configuration.
3. **Infer**: pending shards (those without an output) go to engine workers, Ray Data actors on a local
   Ray (``ray.init()``) or on a cluster (``ray_address``), or an in-process loop (``runner='local'``).
   Each shard's output is parsed and resolved inside the worker and committed atomically
   (temporary file + ``os.replace``), so a shard is either complete or absent.
4. **Write**: the shard outputs are merged, checked against :data:`PREDICTION_SCHEMA` and written as
   one partition ``dt=<x>.parquet`` of the offline store's ``llm_predictions`` table (again atomically);
   then ``_SUCCESS.json`` records the summary. A rerun of a finished date is a no-op unless forced.

Every timestamp in the output is derived from the date or the manifest (not the wall clock of the
shard), so an interrupted-and-resumed run writes exactly the bytes of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from adprior.contracts import PREDICTION_SCHEMA
from adprior.io import atomic_write_parquet, atomic_write_text
from adprior.progress import Progress
from adprior.threads import configure, mark_job
from llm_predictor.eval.stats import mean_pairwise_jaccard
from llm_predictor.infer.engines import EngineConfig, model_path
from llm_predictor.infer.plan import SHARD_INPUT_SCHEMA, InferConfig, plan, shard_problem

log = logging.getLogger(__name__)

# Per-user engine counters kept next to the predictions in shard outputs (not in the offline table).
STAT_COLUMNS = ("prompt_tokens", "computed_prompt_tokens", "generated_tokens")


def event_timestamp(day: date) -> datetime:
    """When a prediction for anchor date ``day`` becomes available: the end of that day (UTC)."""
    return datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# Shard work (runs inside a Ray actor or in-process)
# --------------------------------------------------------------------------------------------------


class ShardWorker:
    """Holds one engine and a name resolver; turns shard inputs into committed shard outputs."""

    def __init__(self, engine: dict[str, Any], day_dir: str, data: str | None, threads: int = 0) -> None:
        """``threads``: the worker's CPU share (``cpus_per_worker``); the engine's explicit ``threads``
        wins, else the cores free of other processes right now, at most ``threads``
        (:func:`adprior.threads.configure`, which also sets OMP_NUM_THREADS for vLLM's engine process)."""
        from llm_predictor.data.resolver import AdvertiserResolver
        from llm_predictor.infer.backends import make_engine

        self.threads = configure(engine.get("threads"), cap=threads if threads > 0 else None)
        self.engine = make_engine(EngineConfig(**engine))
        self.day_dir = Path(day_dir)
        self.manifest = json.loads((self.day_dir / "manifest.json").read_text())
        if self.engine.model_version != self.manifest["model_version"]:
            raise RuntimeError(
                f"engine model {self.engine.model_version} is not the planned {self.manifest['model_version']}"
            )
        self.prefix = (self.day_dir / "prefix.txt").read_text()
        vocab = self.day_dir / "interests.json"
        self.interests = json.loads(vocab.read_text()) if vocab.exists() else []
        self.resolver = AdvertiserResolver.from_table(_advertisers_table(data, self.day_dir))

    def process(self, shard: int) -> dict[str, Any]:
        """Infer, parse, resolve and commit one shard; returns its counters."""
        from llm_predictor.data.parsing import parse_answer

        out_path = self.day_dir / "outputs" / f"shard-{shard:05d}.parquet"
        if out_path.exists():  # committed by an earlier attempt
            return {"shard": shard, "users": 0, "seconds": 0.0, "skipped": 1, "threads": self.threads}
        t0 = time.perf_counter()
        inp = pq.read_table(self.day_dir / "inputs" / f"shard-{shard:05d}.parquet", schema=SHARD_INPUT_SCHEMA)
        user_ids = inp.column("user_id").to_pylist()
        gens = self.engine.generate(
            self.prefix,
            inp.column("suffix").to_pylist(),
            inp.column("allowed_names").to_pylist(),
            self.interests,
        )
        day = date.fromisoformat(self.manifest["day"])
        ev_ts = event_timestamp(day)
        created = datetime.fromisoformat(self.manifest["created"])
        cols: dict[str, list[Any]] = {name: [] for name in PREDICTION_SCHEMA.names}
        cols.update({c: [] for c in STAT_COLUMNS})
        for uid, g in zip(user_ids, gens, strict=True):
            parsed = parse_answer(g.text)
            ids, resolutions = self.resolver.resolve_list(parsed.advertisers)
            cols["user_id"].append(uid)
            cols["event_timestamp"].append(ev_ts)
            cols["created_timestamp"].append(created)
            cols["anchor_date"].append(day)
            cols["advertiser_ids"].append(ids)
            cols["advertiser_names"].append([self.resolver.name_of(a) or "" for a in ids])
            cols["raw_names"].append(parsed.advertisers)
            cols["interests"].append(parsed.interests)
            cols["model_version"].append(self.engine.model_version)
            cols["engine"].append(self.manifest["config"]["engine"]["kind"])
            # the decoder's verdict wins over the parser's ('truncated', 'empty_pool', 'short_pool', ...)
            cols["status"].append(parsed.status if g.status == "ok" else g.status)
            cols["n_unresolved"].append(sum(r.advertiser_id is None for r in resolutions))
            cols["raw_output"].append(g.text)
            for c in STAT_COLUMNS:
                cols[c].append(int(getattr(g, c)))
        schema = PREDICTION_SCHEMA
        for c in STAT_COLUMNS:
            schema = schema.append(pa.field(c, pa.int64()))
        atomic_write_parquet(pa.table(cols, schema=schema), out_path)
        return {
            "shard": shard,
            "users": len(user_ids),
            "seconds": time.perf_counter() - t0,
            "skipped": 0,
            "threads": self.threads,  # what configure() chose for this worker (the free cores)
        }

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """Ray Data entry point: a batch of shard numbers in, one counter row per shard out."""
        rows = [self.process(int(s)) for s in batch["shard"]]
        return (
            {k: [r[k] for r in rows] for k in rows[0]}
            if rows
            else {"shard": [], "users": [], "seconds": [], "skipped": [], "threads": []}
        )


def _advertisers_table(data: str | None, day_dir: Path) -> Any:
    """The advertisers table for the resolver: the raw table, else the names in the plan's pools."""
    import pyarrow.dataset as pads

    if data and (Path(data) / "advertisers").exists():
        return pads.dataset(Path(data) / "advertisers", format="parquet").to_table()
    raise FileNotFoundError(
        f"no advertisers table under {data!r}: the resolver needs the raw advertisers table (pass --data)"
    )


def _drop_bad_outputs(day_dir: Path, n_shards: int) -> None:
    """Remove committed shard outputs that do not read back with their input's users, so they are redone."""
    for i in range(n_shards):
        out = day_dir / "outputs" / f"shard-{i:05d}.parquet"
        if not out.exists():
            continue
        want = pq.read_table(day_dir / "inputs" / out.name, schema=SHARD_INPUT_SCHEMA).column("user_id")
        problem = shard_problem(out, want.to_pylist())
        if problem:
            log.warning("shard output %s is %s; recomputing that shard", out, problem)
            out.unlink()


def _pending(day_dir: Path, n_shards: int) -> list[int]:
    return [i for i in range(n_shards) if not (day_dir / "outputs" / f"shard-{i:05d}.parquet").exists()]


def _run_local(cfg: InferConfig, pending: list[int]) -> Iterator[dict[str, Any]]:
    worker = ShardWorker(
        dataclasses.asdict(cfg.engine),
        str(cfg.day_dir()),
        str(cfg.data) if cfg.data else None,
        int(cfg.cpus_per_worker),
    )
    try:
        for shard in pending:
            yield worker.process(shard)
    finally:
        worker.engine.close()


def _run_ray(cfg: InferConfig, pending: list[int]) -> Iterator[dict[str, Any]]:
    import ray

    if not ray.is_initialized():
        if cfg.ray_address is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private single-machine Ray on loopback
            # Ray runs its workers at niceness 15; in a private Ray they do all of this job's work, so they run
            # at the driver's priority (otherwise any other process on the machine starves the nightly).
            os.environ.setdefault("RAY_worker_niceness", "0")
            mark_job()  # Ray's daemons and actors are this job's processes, not neighbours (adprior.threads)
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=cfg.ray_address, log_to_driver=False, logging_level=logging.WARNING)
    import ray.data  # its import (re)configures the 'ray.data' logger at DEBUG: levels are set after it

    if not log.isEnabledFor(logging.DEBUG):  # `adprior -v` keeps Ray Data's execution-plan INFO lines
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        # "Progress bars disabled": on purpose, the driver shows one bar over users
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar over users
    ctx.execution_no_progress_timeout_s = (
        -1 if cfg.no_progress_timeout_s is None else cfg.no_progress_timeout_s
    )
    ds = ray.data.from_items([{"shard": s} for s in pending], override_num_blocks=len(pending))
    out = ds.map_batches(
        ShardWorker,
        fn_constructor_kwargs={
            "engine": dataclasses.asdict(cfg.engine),
            "day_dir": str(cfg.day_dir().resolve()),
            "data": str(Path(cfg.data).resolve()) if cfg.data else None,
            "threads": int(cfg.cpus_per_worker),
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=cfg.workers),
        num_cpus=cfg.cpus_per_worker,
        num_gpus=cfg.gpus_per_worker or None,
    )
    # Each shard's row as soon as its task ends: iter_rows() prefetches one block ahead, so it hands a
    # shard over only when the *next* one is done (the progress line lagged one shard, ~2 min here).
    for batch in out.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
        yield from batch.to_pylist()


# --------------------------------------------------------------------------------------------------
# Merge and write
# --------------------------------------------------------------------------------------------------


def merge_outputs(day_dir: Path, n_shards: int) -> tuple[pa.Table, dict[str, int]]:
    """All shard outputs of a plan as one predictions table (user-id order) and the engine counters."""
    missing = _pending(day_dir, n_shards)
    if missing:
        raise RuntimeError(f"{len(missing)} shard(s) of {day_dir} have no output yet (first: {missing[0]})")
    parts = [pq.read_table(day_dir / "outputs" / f"shard-{i:05d}.parquet") for i in range(n_shards)]
    if not parts:
        return PREDICTION_SCHEMA.empty_table(), {c: 0 for c in STAT_COLUMNS}
    table = pa.concat_tables(parts).sort_by("user_id")
    ids = table.column("user_id").to_pylist()
    if len(set(ids)) != len(ids):
        raise RuntimeError(f"duplicate users across the shards of {day_dir}")
    stats = {c: int(pc.sum(table.column(c)).as_py() or 0) for c in STAT_COLUMNS}
    return table.select(PREDICTION_SCHEMA.names).cast(PREDICTION_SCHEMA), stats


def _partition_problem(path: Path, summary: Mapping[str, Any]) -> str | None:
    """Why the predictions partition of a finished date cannot be trusted, or None when its footer reads
    back with the prediction schema's columns and the row count ``_SUCCESS.json`` recorded (the footer only:
    a truncated or overwritten file fails here; the pages are not decoded)."""
    try:
        meta = pq.read_metadata(path)
    except FileNotFoundError:
        return f"missing ({path})"
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable ({path}: {exc})"
    missing = set(PREDICTION_SCHEMA.names) - set(meta.schema.to_arrow_schema().names)
    if missing:
        return f"missing columns {sorted(missing)} ({path})"
    if meta.num_rows != summary.get("inferred"):
        return f"{meta.num_rows} rows where _SUCCESS.json recorded {summary.get('inferred')} ({path})"
    return None


def run_inference(cfg: InferConfig) -> dict[str, Any]:
    """Run (or resume) the inference of one date and write its predictions partition; returns a summary.

    Args:
        cfg: the run's configuration (see :class:`InferConfig`).

    Returns:
        A JSON-able summary: users served / skipped / inferred, parse status counts, hallucinated names,
        prompt tokens computed versus total, seconds and users per second, and the output path. When the
        date had already finished and ``cfg.force`` is false, the stored summary with ``noop: True`` (unless
        its predictions partition no longer reads back: then it is rebuilt from the shards, see
        :func:`_partition_problem`).
    """
    from llm_predictor.infer.engines import model_version

    if cfg.runner not in ("ray", "local"):
        raise ValueError(f"runner must be 'ray' or 'local', got {cfg.runner!r}")
    d = cfg.day_dir()
    success = d / "_SUCCESS.json"
    if success.exists() and not cfg.force:
        summary = json.loads(success.read_text())
        problem = _partition_problem(Path(cfg.predictions) / f"dt={cfg.day.isoformat()}.parquet", summary)
        if problem is None:
            log.info("%s already inferred (%s); nothing to do (use --force to redo)", cfg.day, success)
            return {**summary, "noop": True}
        # The date finished, but its output was lost since: rebuild it from the committed shards (a shard
        # that is gone or corrupt is recomputed) instead of reporting a no-op over missing predictions.
        log.warning(
            "%s was inferred but its predictions partition is %s; rebuilding it from the shards",
            cfg.day,
            problem,
        )
        success.unlink()
    if cfg.force and d.exists():
        shutil.rmtree(d)
    t0 = time.perf_counter()
    mv = model_version(model_path(cfg.engine))
    manifest = plan(cfg, mv)
    n_shards = manifest["n_shards"]
    _drop_bad_outputs(d, n_shards)
    pending = _pending(d, n_shards)
    done = n_shards - len(pending)
    log.info(
        "%s: %d users in %d shards, %d already committed, %d to run (%s runner, engine %s, model %s)",
        cfg.day,
        manifest["n_users"],
        n_shards,
        done,
        len(pending),
        cfg.runner,
        cfg.engine.kind,
        mv,
    )
    t_inf = time.perf_counter()
    users_run = 0
    threads: set[int] = set()  # compute threads the workers chose (adprior.threads.configure)
    if pending:
        runner = _run_ray if cfg.runner == "ray" else _run_local
        total, before = manifest["n_users"], min(done * cfg.shard_size, manifest["n_users"])
        # every committed shard of every actor counts; without a terminal one line per shard (every_s=0)
        with Progress(total, f"infer {cfg.day}", "users", initial=before, every_s=0, logger=log) as bar:
            for r in runner(cfg, pending):
                users_run += int(r["users"])
                threads.add(int(r["threads"]))
                bar.update(int(r["users"]))
    infer_seconds = time.perf_counter() - t_inf
    table, stats = merge_outputs(d, n_shards)
    out_path = Path(cfg.predictions) / f"dt={cfg.day.isoformat()}.parquet"
    atomic_write_parquet(table, out_path)
    status = table.column("status").to_pylist()
    n_names = sum(len(x) for x in table.column("raw_names").to_pylist())
    n_unres = int(pc.sum(table.column("n_unresolved")).as_py() or 0) if len(table) else 0
    summary = {
        "day": cfg.day.isoformat(),
        "model_version": mv,
        "engine": cfg.engine.kind,
        "runner": cfg.runner,
        **manifest["counts"],
        "inferred": len(table),
        "shards": n_shards,
        "shards_resumed": done,
        "users_run_now": users_run,
        "status": {s: status.count(s) for s in sorted({"ok", "partial", "unparseable", *status})},
        "with_interests": sum(1 for x in table.column("interests").to_pylist() if x),
        "names": n_names,
        "unresolved_names": n_unres,
        "hallucination_rate": n_unres / n_names if n_names else 0.0,
        "mean_advertisers": (
            sum(len(x) for x in table.column("advertiser_ids").to_pylist()) / len(table)
            if len(table)
            else 0.0
        ),
        # how user-specific the lists are: 1 = every user gets the same 20 advertisers (issue 18: <= 0.25)
        "mean_pairwise_jaccard": mean_pairwise_jaccard(table.column("advertiser_ids").to_pylist()),
        **stats,
        "prompt_token_fraction_computed": (
            stats["computed_prompt_tokens"] / stats["prompt_tokens"] if stats["prompt_tokens"] else None
        ),
        "threads": sorted(threads),
        "infer_seconds": round(infer_seconds, 2),
        "users_per_second": round(users_run / infer_seconds, 4) if users_run and infer_seconds else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "output": str(out_path),
        "sample_users": table.column("user_id").to_pylist()[:5],
    }
    atomic_write_text(json.dumps(summary, indent=2), success)
    return summary
