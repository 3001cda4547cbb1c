"""What every verb shares: the console, logging set-up, date parsing and the store options."""

from __future__ import annotations

import logging
import warnings
from datetime import date
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler

console = Console()


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"dask(\..*)?")  # dask's pandas notices
    for noisy in ("py4j", "py4j.clientserver"):  # Spark's Python bridge logs every closed connection at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse_date(_ctx: click.Context, _param: click.Parameter, value: str | tuple[str, ...] | None):
    if value is None:
        return None
    try:
        if isinstance(value, tuple):
            return [date.fromisoformat(v) for v in value]
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected YYYY-MM-DD: {exc}") from exc


def store_options(f):
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
