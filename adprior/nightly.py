"""The daily job (design.md "The flow"): select -> compile -> infer -> write offline -> materialize.

:func:`run_nightly` chains the stages' library functions for one date; every stage is also a verb of
its own (``adprior compile``, ``adprior infer``, ``adprior materialize``). On embedded defaults it
simulates a small world first, so that the job runs end to end on a fresh machine; with ``data`` it
reads a real raw-table root instead.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from adprior.store import StoreConfig
from llm_predictor.infer.engines import EngineConfig
from llm_predictor.infer.plan import InferConfig

log = logging.getLogger(__name__)

# The InferConfig fields a night passes through unchanged (NightlyConfig declares them with InferConfig's defaults).
INFER_FIELDS = (
    "engine",
    "budget_tokens",
    "shard_size",
    "runner",
    "ray_address",
    "workers",
    "cpus_per_worker",
    "gpus_per_worker",
    "incremental",
    "limit_users",
    "force",
)


def _infer_default(name: str) -> Any:
    """InferConfig's default of ``name`` (a fresh object for a default factory)."""
    f = {f.name: f for f in dataclasses.fields(InferConfig)}[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@dataclass
class NightlyConfig:
    """One night of the pipeline."""

    day: date | None = None  # inference date x; None: the simulated world's end - 8 days (labels exist)
    workdir: Path = Path("runs/nightly")  # simulated world, compiled examples, inference shards, summaries
    data: Path | None = None  # raw-table root; None: simulate a world of `users` users under workdir/world
    users: int = 150  # users of the embedded simulated world (sized so the CPU default fits 20 min)
    impression_rate: float = 0.6  # ad impressions per user-day of the embedded world (ranking data volume)
    seed: int = 7  # simulated world seed
    master: str = "local[2]"  # Spark master URL ('local[N]', 'spark://host:7077', ...)
    countries: str = "US"  # serving countries (comma-separated)
    store: StoreConfig = field(default_factory=StoreConfig)  # Feast repo and online store choice
    # How to infer: the same fields as llm_predictor.infer.plan.InferConfig, with its defaults (one source)
    engine: EngineConfig = field(default_factory=lambda: _infer_default("engine"))  # model and engine
    budget_tokens: int = _infer_default("budget_tokens")  # token budget of each user's part of the prompt
    shard_size: int = _infer_default("shard_size")  # users per inference shard (unit of commit and resume)
    runner: str = _infer_default("runner")  # 'ray' | 'local'
    ray_address: str | None = _infer_default("ray_address")  # None: local Ray; else a cluster address
    workers: int = _infer_default("workers")  # engine actors
    cpus_per_worker: float = _infer_default("cpus_per_worker")  # Ray CPUs (and torch threads) per actor
    gpus_per_worker: float = _infer_default("gpus_per_worker")  # Ray GPUs per actor
    incremental: bool = _infer_default(
        "incremental"
    )  # re-infer only users with activity since their last one
    limit_users: int | None = _infer_default("limit_users")  # infer at most this many users; None = all
    materialize: bool = True  # push the new offline rows to the online store at the end
    heuristic: bool = True  # also write the heuristic control of tonight's LLM users (adprior.controls)
    force: bool = _infer_default("force")  # redo inference of a date that already finished


def _simulate_if_needed(cfg: NightlyConfig) -> tuple[Path, date]:
    from world.config import WorldConfig
    from world.simulate import simulate as run_sim

    data = cfg.workdir / "world"
    wc = WorldConfig(out=data, users=cfg.users, seed=cfg.seed, workers=2, impression_rate=cfg.impression_rate)
    marker = data.parent / (data.name + "_truth") / "world.json"
    old = json.loads(marker.read_text())["config"] if marker.exists() else {}
    if (old.get("users"), old.get("seed"), old.get("impression_rate")) != (
        wc.users,
        wc.seed,
        wc.impression_rate,
    ):
        log.info("simulating a world of %d users under %s", cfg.users, data)
        run_sim(wc)
    return data, cfg.day or wc.end_date - timedelta(days=8)


def run_nightly(cfg: NightlyConfig) -> dict[str, Any]:
    """Run the daily job for one date and return a summary with per-stage seconds.

    Args:
        cfg: the night's configuration (see :class:`NightlyConfig`).

    Returns:
        ``{"day", "stages": {name: seconds}, "compile", "features", "infer", "heuristic", "materialize"}``;
        the same dict is written to ``<workdir>/nightly-<day>.json``.
    """
    from adprior import store
    from adprior.io import SparkConfig, spark_running, stop_spark
    from llm_predictor.data.compile import CompileConfig, compile_examples
    from llm_predictor.data.compiled import load_examples
    from llm_predictor.infer.plan import InferConfig
    from llm_predictor.infer.shards import event_timestamp, run_inference

    stages: dict[str, float] = {}
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    store.init_repo(cfg.store.repo)
    t = time.perf_counter()
    if cfg.data is None:
        data, day = _simulate_if_needed(cfg)
    else:
        if cfg.day is None:
            raise ValueError("day is required with a data root")
        data, day = Path(cfg.data), cfg.day
    stages["simulate"] = time.perf_counter() - t

    t = time.perf_counter()
    ex_dir = cfg.workdir / "examples"
    own_spark = not spark_running()  # a caller's session (a test's, a notebook's) is left running
    comp = compile_examples(
        CompileConfig(
            data=data,
            out=ex_dir,
            anchor_dates=[day],
            countries=tuple(c.strip() for c in cfg.countries.split(",") if c.strip()),
            spark=SparkConfig(master=cfg.master),
            tokenizer=None,
        )
    )
    if own_spark:  # compile is the night's only Spark stage: free the JVM's core for inference
        stop_spark()
    stages["compile"] = time.perf_counter() - t

    t = time.perf_counter()
    examples = load_examples(ex_dir, day)
    features = store.write_daily_features(cfg.store, data, examples, day)
    stages["write_features"] = time.perf_counter() - t

    t = time.perf_counter()
    icfg = InferConfig(
        examples=ex_dir,
        day=day,
        predictions=store.offline_dir(cfg.store, "llm_predictions"),
        work=cfg.workdir / "infer",
        data=data,
        **{name: getattr(cfg, name) for name in INFER_FIELDS},
    )
    inf = run_inference(icfg)
    stages["infer"] = time.perf_counter() - t

    heur: dict[str, Any] = {}
    if cfg.heuristic:  # the consumers' control, in the llm_predictions shape (issue 18)
        from adprior.controls import HeuristicConfig, write_heuristic

        t = time.perf_counter()
        heur = write_heuristic(HeuristicConfig(examples=ex_dir, day=day, store=cfg.store, data=data))
        stages["heuristic"] = time.perf_counter() - t

    mat: dict[str, Any] = {}
    if cfg.materialize:
        t = time.perf_counter()
        store.apply(cfg.store)
        mat = store.materialize(cfg.store, end=event_timestamp(day) + timedelta(seconds=1))
        stages["materialize"] = time.perf_counter() - t
    summary = {
        "day": day.isoformat(),
        "data": str(data),
        "stages": {k: round(v, 2) for k, v in stages.items()},
        "total_seconds": round(sum(stages.values()), 2),
        "compile": {"seconds": comp.get("seconds"), **comp["dates"][day.isoformat()]["sets"]},
        "features": features,
        "infer": inf,
        "heuristic": heur,
        "materialize": mat,
        "store": {"repo": str(cfg.store.repo), "online": cfg.store.online},
    }
    (cfg.workdir / f"nightly-{day.isoformat()}.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def run_backfill(cfg: NightlyConfig, days: list[date]) -> list[dict[str, Any]]:
    """Run the nightly job for each date in ascending order (a backfill of past nights).

    Each night only sees events before its date and, incrementally, re-infers only users with new
    activity; finished nights are no-ops, so an interrupted backfill resumes where it stopped.

    Args:
        cfg: the nightly configuration; its ``day`` is replaced by each date in turn.
        days: inference dates.

    Returns:
        One :func:`run_nightly` summary per date, in date order.
    """
    from dataclasses import replace

    out = []
    for i, d in enumerate(sorted(set(days)), start=1):
        log.info("backfill night %d/%d: %s", i, len(set(days)), d)
        out.append(run_nightly(replace(cfg, day=d)))
    return out
