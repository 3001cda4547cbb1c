"""The plan of one nightly inference run: which users, which prompts, which shards (steps 1-2 of
:mod:`llm_predictor.infer.shards`).

1. **Select** the users to infer: the serving population of ``x`` (the compiled examples of that
   date), minus, with ``incremental``, every user whose latest prediction already in the offline store
   is newer than their latest activity (``last_event_ts``) and was made by the same model version. Those
   users keep their last prediction, with its original timestamp (nothing is rewritten for them).
2. **Plan**: the prompts are built once (the shared prefix and one suffix per user), cut into shards of
   ``shard_size`` users in user-id order and written to ``inputs/shard-NNNNN.parquet`` together with a
   ``manifest.json`` that fingerprints the inputs and the configuration. A rerun with the same
   fingerprint reuses the plan (a damaged input is rebuilt); one with a different fingerprint refuses to
   mix outputs unless forced.

:class:`InferConfig` is the run's whole configuration; :func:`interest_vocabulary_of` gives the interest
vocabulary the plan records for the answer grammar.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from adprior.io import atomic_write_parquet, atomic_write_text
from llm_predictor.data.prompts import DEFAULT_USER_TOKENS
from llm_predictor.data.templates import INFERENCE_TEMPLATE
from llm_predictor.infer.engines import EngineConfig, model_path

log = logging.getLogger(__name__)

SHARD_INPUT_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("suffix", pa.string()),  # the per-user part of the prompt
        ("allowed_names", pa.list_(pa.string())),  # constrained decoding pool: active advertisers ∪ preset
    ]
)


@dataclass
class InferConfig:
    """One nightly inference run."""

    examples: Path  # compiled examples folder (``adprior compile --out``) holding the date's examples
    day: date  # the inference (anchor) date x; predictions get event_timestamp x + 1 day 00:00 UTC
    predictions: Path  # offline-store folder of the llm_predictions table (one dt=<x>.parquet per date)
    work: Path = Path("runs/infer")  # plans, shard inputs/outputs and run summaries, per date
    data: Path | None = None  # raw-table root (its advertisers table feeds the name resolver)
    # model and engine; each inference worker holds one vLLM engine, so it runs in the worker's process
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(kind="vllm", vllm_in_process=True))
    template: str = INFERENCE_TEMPLATE  # prompt template (the GRPO 20-advertiser + interests format)
    budget_tokens: int = DEFAULT_USER_TOKENS  # token budget of each user's part of the prompt
    shard_size: int = 32  # users per shard: the unit of work, commit and resume
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
        """The folder of this date's plan, shard inputs and outputs and run summary."""
        return Path(self.work) / self.day.isoformat()


# --------------------------------------------------------------------------------------------------
# Select
# --------------------------------------------------------------------------------------------------


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


def plan(cfg: InferConfig, model_version: str) -> dict[str, Any]:
    """Select users, build prompts and write the shard inputs and manifest (or reuse a matching plan)."""
    from transformers import AutoTokenizer

    from llm_predictor.data.compiled import load_examples, load_preset_pool
    from llm_predictor.data.prompts import (
        PromptBudget,
        allowed_names,
        hf_token_counter,
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
    tok = AutoTokenizer.from_pretrained(str(model_path(cfg.engine)))
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
            allowed.append(allowed_names(r, pool, budget))
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
                problem = shard_problem(path, want, SHARD_INPUT_SCHEMA)
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


def interest_vocabulary_of(data: Path | str | None) -> list[str]:
    """The interest vocabulary of the answer grammar: the category paths of the raw advertisers table
    (empty without a data root: the answers then hold no interests)."""
    from llm_predictor.infer.grammar import interest_vocabulary

    if not data or not (Path(data) / "advertisers").exists():
        log.warning("no advertisers table under %r: answers will carry no interests", data)
        return []
    table = pq.read_table(Path(data) / "advertisers", columns=["category"])
    return interest_vocabulary(table.column("category").to_pylist())


def shard_problem(path: Path, user_ids: Sequence[int], schema: pa.Schema | None = None) -> str | None:
    """Why a shard file cannot be used (unreadable, or not exactly ``user_ids``), or None when it is sound."""
    if not path.exists():
        return "missing"
    try:
        got = pq.read_table(path, schema=schema).column("user_id").to_pylist()
    except (pa.ArrowException, OSError, KeyError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    return None if got == list(user_ids) else f"not the planned users ({len(got)} rows)"
