"""Nightly batch inference: selected users -> prompts -> engine (on Ray Data) -> predictions table.

One run handles one inference date ``x`` (the anchor date of the compiled examples) and goes through
four steps, each of which leaves files under ``<work>/<x>/`` so that a run killed at any point resumes:

1. **Select** the users to infer: the serving population of ``x`` (the compiled examples of that
   date), minus, with ``incremental``, every user whose latest prediction already in the offline store
   is newer than their latest activity (``last_event_ts``) and was made by the same model version. Those
   users keep their last prediction, with its original timestamp (nothing is rewritten for them).
2. **Plan**: the prompts are built once (the shared prefix and one suffix per user), cut into shards of
   ``shard_size`` users in user-id order and written to ``inputs/shard-NNNNN.parquet`` together with a
   ``manifest.json`` that fingerprints the inputs and the configuration. A rerun with the same
   fingerprint reuses the plan; one with a different fingerprint refuses to mix outputs unless forced.
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
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from adprior.contracts import PREDICTION_SCHEMA
from adprior.io import atomic_write_parquet, atomic_write_text
from llm_predictor.data.prompts import INFERENCE_TEMPLATE
from llm_predictor.infer.engines import EngineConfig

log = logging.getLogger(__name__)

SHARD_INPUT_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("suffix", pa.string()),  # the per-user part of the prompt
        ("allowed_names", pa.list_(pa.string())),  # constrained decoding pool: active advertisers ∪ preset
    ]
)
# Per-user engine counters kept next to the predictions in shard outputs (not in the offline table).
STAT_COLUMNS = ("prompt_tokens", "computed_prompt_tokens", "generated_tokens")


@dataclass
class InferConfig:
    """One nightly inference run."""

    examples: Path  # compiled examples folder (``adprior compile --out``) holding the date's examples
    day: date  # the inference (anchor) date x; predictions get event_timestamp x + 1 day 00:00 UTC
    predictions: Path  # offline-store folder of the llm_predictions table (one dt=<x>.parquet per date)
    work: Path = Path("runs/infer")  # plans, shard inputs/outputs and run summaries, per date
    data: Path | None = None  # raw-table root (its advertisers table feeds the name resolver)
    engine: EngineConfig = field(default_factory=EngineConfig)  # which model and engine generate
    template: str = INFERENCE_TEMPLATE  # prompt template (the GRPO 20-advertiser + interests format)
    budget_tokens: int = 1024  # token budget of each user's part of the prompt
    shard_size: int = 64  # users per shard: the unit of work, commit and resume
    runner: str = "ray"  # 'ray' (Ray Data actors) | 'local' (in-process loop, same shard code)
    ray_address: str | None = None  # None: start a local Ray; 'auto' or 'ray://host:10001': a cluster
    workers: int = 1  # engine actors (each loads the model once and takes shards until none are left)
    cpus_per_worker: float = 2.0  # Ray CPUs per actor (also its torch threads on CPU)
    gpus_per_worker: float = 0.0  # Ray GPUs per actor (1 for a vLLM or CUDA transformers engine)
    # Ray Data fails a run whose operators show no progress for this long (Ray's default: 1800 s). One shard
    # is one unit of progress, and a shard of a real model on a busy CPU can take longer than that; None
    # disables the timeout (shards are committed one by one and a killed run resumes, so nothing hangs unseen).
    no_progress_timeout_s: float | None = None
    incremental: bool = True  # skip users with no new activity since their last prediction
    limit_users: int | None = None  # infer at most this many selected users (lowest ids first); None = all
    force: bool = False  # redo a finished date, or replace a plan whose fingerprint differs

    def day_dir(self) -> Path:
        return Path(self.work) / self.day.isoformat()


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def event_timestamp(day: date) -> datetime:
    """When a prediction for anchor date ``day`` becomes available: the end of that day (UTC)."""
    return datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=UTC)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, float) and value != value:  # NaN
        return []
    return list(value)


def previous_predictions(predictions: Path, before: date) -> dict[int, tuple[datetime, str]]:
    """Per user, (event_timestamp, model_version) of the newest prediction made for a date before ``before``."""
    latest: dict[int, tuple[datetime, str]] = {}
    folder = Path(predictions)
    if not folder.exists():
        return latest
    for path in sorted(folder.glob("dt=*.parquet")):
        try:
            day = date.fromisoformat(path.stem.split("=", 1)[1])
        except ValueError:
            log.warning("ignoring %s: not a dt=YYYY-MM-DD partition", path)
            continue
        if day >= before:
            continue
        t = pq.read_table(path, columns=["user_id", "event_timestamp", "model_version"])
        for uid, ts, mv in zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True):
            if uid not in latest or ts > latest[uid][0]:
                latest[uid] = (ts, mv)
    return latest


def select_users(
    examples: Any, previous: dict[int, tuple[datetime, str]], model_version: str, incremental: bool
) -> tuple[Any, dict[str, int]]:
    """(rows to infer, counts): with ``incremental``, users with no activity after their last prediction
    by the same model version are skipped."""
    n = len(examples)
    if not incremental or not previous:
        return examples, {"serving": n, "skipped_no_new_activity": 0, "selected": n}
    keep = []
    for uid, last_ev in zip(examples["user_id"], examples["last_event_ts"], strict=True):
        prev = previous.get(int(uid))
        if prev is None or prev[1] != model_version or last_ev is None or last_ev != last_ev:
            keep.append(True)
            continue
        keep.append(bool(last_ev.to_pydatetime() >= prev[0]))
    rows = examples[keep]
    return rows, {"serving": n, "skipped_no_new_activity": n - len(rows), "selected": len(rows)}


# --------------------------------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------------------------------


def _fingerprint(
    cfg: InferConfig, model_version: str, prefix: str, user_ids: Sequence[int], interests: Sequence[str] = ()
) -> str:
    engine = dataclasses.asdict(cfg.engine)
    engine.pop("model", None)  # the model is identified by model_version (content hash)
    payload = {
        "day": cfg.day.isoformat(),
        "template": cfg.template,
        "budget_tokens": cfg.budget_tokens,
        "shard_size": cfg.shard_size,
        "model_version": model_version,
        "engine": engine,
        "prefix_sha": hashlib.sha256(prefix.encode()).hexdigest(),
        "users_sha": hashlib.sha256(",".join(map(str, user_ids)).encode()).hexdigest(),
        "interests_sha": hashlib.sha256("\n".join(interests).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_path(cfg: InferConfig) -> Path:
    if cfg.engine.model:
        return Path(cfg.engine.model)
    from llm_predictor.base_model import ensure_base_model

    return Path(ensure_base_model())


def plan(cfg: InferConfig, model_version: str) -> dict[str, Any]:
    """Select users, build prompts and write the shard inputs and manifest (or reuse a matching plan)."""
    from transformers import AutoTokenizer

    from llm_predictor.data.compile import load_examples, load_preset_pool
    from llm_predictor.data.prompts import (
        PromptBudget,
        hf_token_counter,
        sanitize_text,
        shared_prefix,
        user_suffix,
    )

    d = cfg.day_dir()
    manifest_path = d / "manifest.json"
    examples = load_examples(Path(cfg.examples), cfg.day)
    if examples.empty:
        raise ValueError(
            f"no compiled examples for {cfg.day} under {cfg.examples}; run `adprior compile` first"
        )
    examples = examples.sort_values("user_id").reset_index(drop=True)
    previous = previous_predictions(Path(cfg.predictions), cfg.day)
    rows, counts = select_users(examples, previous, model_version, cfg.incremental)
    if cfg.limit_users is not None:
        rows = rows.iloc[: cfg.limit_users]
        counts["limited_out"] = counts["selected"] - len(rows)
        counts["selected"] = len(rows)
    pool = load_preset_pool(Path(cfg.examples), cfg.day)
    tok = AutoTokenizer.from_pretrained(str(_model_path(cfg)))
    budget = PromptBudget(max_user_tokens=cfg.budget_tokens, count_tokens=hf_token_counter(tok))
    prefix = shared_prefix(cfg.template, pool, budget.max_item_chars)
    interests = interest_vocabulary_of(cfg.data)
    user_ids = [int(u) for u in rows["user_id"]]
    fp = _fingerprint(cfg, model_version, prefix, user_ids, interests)
    records = rows.to_dict("records")

    def write_input(i: int) -> None:
        chunk = records[i * cfg.shard_size : (i + 1) * cfg.shard_size]
        suffixes, allowed = [], []
        for r in chunk:
            suffixes.append(user_suffix(cfg.template, r, budget))
            names = [
                sanitize_text(n, budget.max_item_chars) for n in [*_as_list(r["active_advertisers"]), *pool]
            ]
            allowed.append(list(dict.fromkeys(n for n in names if n)))
        table = pa.table(
            {"user_id": [int(r["user_id"]) for r in chunk], "suffix": suffixes, "allowed_names": allowed},
            schema=SHARD_INPUT_SCHEMA,
        )
        atomic_write_parquet(table, d / "inputs" / f"shard-{i:05d}.parquet")

    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old["fingerprint"] == fp:
            log.info("reusing the plan of %s (%d shards)", cfg.day, old["n_shards"])
            for i in range(old["n_shards"]):  # a damaged input is rebuilt (the plan is deterministic)
                path = d / "inputs" / f"shard-{i:05d}.parquet"
                want = user_ids[i * cfg.shard_size : (i + 1) * cfg.shard_size]
                problem = _shard_problem(path, want, SHARD_INPUT_SCHEMA)
                if problem:
                    log.warning("shard input %s is %s; rebuilding it", path, problem)
                    write_input(i)
            return old
        if any((d / "outputs").glob("shard-*.parquet")) and not cfg.force:
            raise RuntimeError(
                f"{d} holds shard outputs of a different plan (fingerprint {old['fingerprint']} != {fp}: "
                "model, engine settings, prompts or users changed); rerun with --force to start over"
            )
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    n_shards = 0
    for n_shards, _ in enumerate(
        tqdm(range(0, len(records), cfg.shard_size), desc="plan", unit="shard", disable=None), start=1
    ):
        write_input(n_shards - 1)
    atomic_write_text(prefix, d / "prefix.txt")
    atomic_write_text(json.dumps(interests, indent=0), d / "interests.json")
    manifest = {
        "fingerprint": fp,
        "day": cfg.day.isoformat(),
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "model_version": model_version,
        "n_shards": n_shards,
        "n_users": len(user_ids),
        "counts": counts,
        "config": json.loads(json.dumps(dataclasses.asdict(cfg), default=str)),
    }
    atomic_write_text(json.dumps(manifest, indent=2), manifest_path)  # written last: the plan's commit
    return manifest


# --------------------------------------------------------------------------------------------------
# Shard work (runs inside a Ray actor or in-process)
# --------------------------------------------------------------------------------------------------


class ShardWorker:
    """Holds one engine and a name resolver; turns shard inputs into committed shard outputs."""

    def __init__(self, engine: dict[str, Any], day_dir: str, data: str | None, threads: int = 0) -> None:
        import torch

        from llm_predictor.data.resolver import AdvertiserResolver
        from llm_predictor.infer.engines import make_engine

        if threads > 0:
            torch.set_num_threads(threads)
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
            return {"shard": shard, "users": 0, "seconds": 0.0, "skipped": 1}
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
        return {"shard": shard, "users": len(user_ids), "seconds": time.perf_counter() - t0, "skipped": 0}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        """Ray Data entry point: a batch of shard numbers in, one counter row per shard out."""
        rows = [self.process(int(s)) for s in batch["shard"]]
        return (
            {k: [r[k] for r in rows] for k in rows[0]}
            if rows
            else {"shard": [], "users": [], "seconds": [], "skipped": []}
        )


def interest_vocabulary_of(data: Path | str | None) -> list[str]:
    """The interest vocabulary of the answer grammar: the category paths of the raw advertisers table
    (empty without a data root: the answers then hold no interests)."""
    from llm_predictor.infer.grammar import interest_vocabulary

    if not data or not (Path(data) / "advertisers").exists():
        log.warning("no advertisers table under %r: answers will carry no interests", data)
        return []
    table = pq.read_table(Path(data) / "advertisers", columns=["category"])
    return interest_vocabulary(table.column("category").to_pylist())


def _advertisers_table(data: str | None, day_dir: Path) -> Any:
    """The advertisers table for the resolver: the raw table, else the names in the plan's pools."""
    import pyarrow.dataset as pads

    if data and (Path(data) / "advertisers").exists():
        return pads.dataset(Path(data) / "advertisers", format="parquet").to_table()
    raise FileNotFoundError(
        f"no advertisers table under {data!r}: the resolver needs the raw advertisers table (pass --data)"
    )


def _shard_problem(path: Path, user_ids: Sequence[int], schema: pa.Schema | None = None) -> str | None:
    """Why a shard file cannot be used (unreadable, or not exactly ``user_ids``), or None when it is sound."""
    if not path.exists():
        return "missing"
    try:
        got = pq.read_table(path, schema=schema).column("user_id").to_pylist()
    except (pa.ArrowException, OSError, KeyError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None if got == list(user_ids) else f"not the planned users ({len(got)} rows)"


def _drop_bad_outputs(day_dir: Path, n_shards: int) -> None:
    """Remove committed shard outputs that do not read back with their input's users, so they are redone."""
    for i in range(n_shards):
        out = day_dir / "outputs" / f"shard-{i:05d}.parquet"
        if not out.exists():
            continue
        want = pq.read_table(day_dir / "inputs" / out.name, schema=SHARD_INPUT_SCHEMA).column("user_id")
        problem = _shard_problem(out, want.to_pylist())
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
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=cfg.ray_address, log_to_driver=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
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
    yield from out.iter_rows()


# --------------------------------------------------------------------------------------------------
# Entry point
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
    mv = model_version(_model_path(cfg))
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
    if pending:
        runner = _run_ray if cfg.runner == "ray" else _run_local
        with tqdm(
            total=manifest["n_users"],
            initial=min(done * cfg.shard_size, manifest["n_users"]),
            desc=f"infer {cfg.day}",
            unit="user",
            disable=None,
        ) as bar:
            for r in runner(cfg, pending):
                users_run += int(r["users"])
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
        **stats,
        "prompt_token_fraction_computed": (
            stats["computed_prompt_tokens"] / stats["prompt_tokens"] if stats["prompt_tokens"] else None
        ),
        "infer_seconds": round(infer_seconds, 2),
        "users_per_second": round(users_run / infer_seconds, 4) if users_run and infer_seconds else None,
        "seconds": round(time.perf_counter() - t0, 2),
        "output": str(out_path),
        "sample_users": table.column("user_id").to_pylist()[:5],
    }
    atomic_write_text(json.dumps(summary, indent=2), success)
    return summary
