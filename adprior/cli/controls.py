"""Control verb: ``adprior heuristic``, the heuristic control's predictions of one date (issue 18)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from adprior.cli.options import console, parse_date, store_options


@click.command()
@click.option(
    "--examples", type=click.Path(exists=True, path_type=Path), required=True, help="Compile output."
)
@click.option("--date", "day", callback=parse_date, required=True, help="Inference (anchor) date x.")
@click.option(
    "--data",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Raw-table root (the advertisers table: canonical names, aliases); default: names from the examples.",
)
@click.option(
    "--all-users",
    is_flag=True,
    help="Every user of the date's examples (default: the users of the LLM's partition of the date).",
)
@click.option("--model-version", default="heuristic-v1", show_default=True, help="Written in every row.")
@click.option(
    "--fit-days", type=int, default=56, show_default=True, help="Anchors before x that fit the heuristic."
)
@store_options()
def heuristic(
    examples: Path,
    day: date,
    data: Path | None,
    all_users: bool,
    model_version: str,
    fit_days: int,
    repo: Path,
    online: str,
) -> None:
    """Write the heuristic control (history + brands + co-occurrence + popularity, top 20) of one date into
    the offline store's heuristic_predictions table, in the llm_predictions shape; `adprior materialize`
    then serves it through the heuristic_* views. The nightly job writes it after inference."""
    from adprior.controls import HeuristicConfig, summary_line, write_heuristic
    from adprior.store import StoreConfig

    cfg = HeuristicConfig(
        examples=examples,
        day=day,
        store=StoreConfig(repo=repo, online=online),
        data=data,
        model_version=model_version,
        fit_days=fit_days,
        match_llm=not all_users,
    )
    s = write_heuristic(cfg)
    console.print_json(json.dumps(s, default=str))
    console.print(summary_line(s))
