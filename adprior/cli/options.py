"""What every verb shares: console, logging set-up, date parsing, store options, command line, config defaults."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shlex
import sys
import warnings
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler

console = Console()
# --online's help on the verbs of the project's own store
ONLINE_HELP = "Online store: embedded SQLite, or Redis at $ADPRIOR_REDIS (host:port[,password=...])."


# Libraries that repeat a line per call at INFO: Spark's Python bridge (every closed connection) and Feast
# ("Registry cache expired, so refreshing" on every registry read). At default verbosity they say only
# warnings; ``-v`` gives everything.
NOISY_LOGGERS: tuple[str, ...] = ("py4j", "feast")


def setup_logging(verbose: bool) -> None:
    """INFO for adprior (DEBUG with ``verbose``), WARNING for the noisy libraries unless ``verbose``."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"dask(\..*)?")  # dask's pandas notices
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.NOTSET if verbose else logging.WARNING)
    if not verbose:
        # vLLM's engine processes repeat ~15 WARNING lines at every start on a CPU (no Triton, eager mode,
        # no tcmalloc, OMP threads) and torch's C++ side its NUMA notice; they read these at start-up.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    if not verbose and not sys.stderr.isatty():
        # Hugging Face datasets' map / filter bars (TRL tokenizes with them) are a screen of carriage
        # returns in a log file; adprior logs its own counts. Read when datasets is imported (later).
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


class ModelParam(click.ParamType):
    """A ``--model`` value: 'base' (the base model), 'default' (base + the shipped adapter), the name of
    another committed adapter ('amazon') or an existing model / shipped-adapter folder (returned as a
    string; ``llm_predictor.shipped.resolve_model`` turns it into a model folder)."""

    name = "model"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from llm_predictor.shipped import shipped_folder

        if str(value) in ("base", "default") or Path(value).is_dir() or shipped_folder(value) is not None:
            return str(value)
        self.fail(
            f"{value!r} is neither 'base', 'default', a committed adapter's name nor an existing model folder",
            param,
            ctx,
        )


MODEL = ModelParam()
MODEL_HELP = (
    "Model: 'default' = SmolLM2-135M-Instruct + the shipped LoRA adapter (llm_predictor/adapters/default; "
    "the base model when none is shipped), 'base' = SmolLM2-135M-Instruct alone, another committed adapter's "
    "name ('amazon': merged into the base model once, cached), or a local HF folder."
)


def parse_date(_ctx: click.Context, _param: click.Parameter, value: str | tuple[str, ...] | None):
    if value is None:
        return None
    try:
        if isinstance(value, tuple):
            return [date.fromisoformat(v) for v in value]
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"expected YYYY-MM-DD: {exc}") from exc


def store_options(
    repo: Path = Path("feature_repo"),
    repo_help: str = "Feast feature repo.",
    online_help: str | None = ONLINE_HELP,
) -> Callable[[Callable], Callable]:
    """``--repo`` / ``--online``, the options of a verb's ``StoreConfig``; ``repo`` is the default folder."""

    def decorate(f: Callable) -> Callable:
        f = click.option(
            "--repo", type=click.Path(path_type=Path), default=repo, show_default=True, help=repo_help
        )(f)
        return click.option(
            "--online",
            type=click.Choice(["sqlite", "redis"]),
            default="sqlite",
            show_default=True,
            help=online_help,
        )(f)

    return decorate


def command_line() -> str:
    """This run's command as a shell line (``adprior ...``), for the reports that say what made them."""
    return " ".join(shlex.quote(a) for a in ["adprior", *sys.argv[1:]])


def default_of(source: Any, name: str) -> Any:
    """The default of ``name`` in a config, so that an option's default has one source.

    Args:
        source: a dataclass (its field's default or default factory's value), a mapping of defaults (its
            entry) or a function (its keyword's default).
        name: the field, key or keyword.
    """
    if dataclasses.is_dataclass(source):
        f = {f.name: f for f in dataclasses.fields(source)}[name]
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        raise ValueError(f"{source.__name__}.{name} has no default")
    if isinstance(source, Mapping):
        return source[name]
    default = inspect.signature(source).parameters[name].default
    if default is inspect.Parameter.empty:
        raise ValueError(f"{source.__name__}({name}=...) has no default")
    return default
