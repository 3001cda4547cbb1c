"""Consumer verbs: ``adprior ranking`` (ctcvr / vtcvr GBDT, Table 5) and ``adprior retrieval`` (two-tower, A/B, Table 6)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from adprior.cli.options import command_line, console, parse_date, store_options

if TYPE_CHECKING:
    from ranking.config import RankingConfig


@click.group()
def ranking() -> None:
    """ctcvr / vtcvr GBDT models on Feast features: baseline, + heuristic-list, + LLM features (Table 5)."""


def _experiment_options(out: str, out_help: str) -> Callable[[Callable], Callable]:
    """--data / --repo / --online / --out of the stages that read the backfilled experiment world."""

    def deco(f: Callable) -> Callable:
        f = click.option(
            "--data",
            type=click.Path(path_type=Path),
            default=Path("runs/ranking/world"),
            show_default=True,
            help="Raw-table root (events; its ground truth for the A/B test).",
        )(f)
        f = store_options(
            Path("runs/ranking/feature_repo"),
            "Feast repo holding the backfilled features and predictions.",
            online_help=None,
        )(f)
        return click.option(
            "--out", type=click.Path(path_type=Path), default=Path(out), show_default=True, help=out_help
        )(f)

    return deco


def _ranking_options(f: Callable) -> Callable:
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


def _table5(cfg: RankingConfig) -> None:
    """Evaluate a trained ranking run, print Table 5 and where the report is."""
    from ranking.evaluate import METRICS, delta_cell, table5_rows
    from ranking.train import evaluate

    results = evaluate(cfg, command_line())
    t = Table(title="Table 5: relative change on the test split (95% user-bootstrap CI)")
    for c in ("task/library", "row", "reference", "positives", "Δ Loss", "Δ AUC", "Δ PR-AUC"):
        t.add_column(c, justify="right")
    for key, label, ref, r in table5_rows(results):
        cells = [delta_cell(r["delta_pct"][m], r["ci_pct"][m]) for m in METRICS]
        t.add_row(key, label, ref, str(r["positives"]), *cells)
    console.print(t)
    console.print(f"report: {cfg.out / 'report.md'}")


@ranking.command("train")
@_ranking_options
@click.option(
    "--start", callback=parse_date, default=None, help="First impression day (default: first prediction)."
)
@click.option(
    "--end", callback=parse_date, default=None, help="Impressions before this day (default: mature labels)."
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
    """Label impressions, join Feast features (baseline, heuristic, LLM services), train xgboost + lightgbm,
    write Table 5 (three rows and the paired LLM-over-heuristic delta)."""
    from ranking.train import train

    cfg = _ranking_config(data, repo, online, out, resamples, start=start, end=end, n_estimators=n_estimators)
    s = train(cfg, reuse_dataset=reuse_dataset)
    console.print(f"trained: rounds {s['rounds']}; seconds {s['seconds']['total']}")
    _table5(cfg)


@ranking.command("eval")
@_ranking_options
def ranking_eval(data: Path, repo: Path, online: str, out: Path, resamples: int) -> None:
    """Recompute Table 5 (metrics, bootstrap intervals, report) from a trained run's test predictions."""
    _table5(_ranking_config(data, repo, online, out, resamples))


@ranking.command("score")
@store_options()
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("runs/ranking/models"), show_default=True
)
@click.option("--task", type=click.Choice(["ctcvr", "vtcvr"]), default="ctcvr", show_default=True)
@click.option("--library", type=click.Choice(["xgboost", "lightgbm"]), default="lightgbm", show_default=True)
@click.option(
    "--features",
    "feature_set",
    type=click.Choice(["llm", "heuristic", "baseline"]),  # ranking.config.SERVICES
    default="llm",
    show_default=True,
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


@click.group()
def retrieval() -> None:
    """Two-tower retrieval, the LLM candidate generator, blending and the simulated A/B test (Table 6)."""


def _retrieval_options(objective_help: str) -> Callable[[Callable], Callable]:
    """The experiment options of the retrieval verbs, then --objective (repeat), the two-tower model(s)."""

    def deco(f: Callable) -> Callable:
        f = click.option(
            "--objective",
            "objectives",
            type=click.Choice(["impression", "click_dwell", "conversion"]),  # retrieval.config.OBJECTIVES
            multiple=True,
            help=objective_help,
        )(f)
        return _experiment_options(
            "runs/retrieval", "Models (<out>/<objective>) and A/B results (<out>/ab)."
        )(f)

    return deco


@retrieval.command("train")
@_retrieval_options("Positives (repeat; default: all three).")
@click.option("--end", callback=parse_date, default=None, help="Interactions before this day (default: all).")
@click.option("--epochs", type=int, default=5, show_default=True)
def retrieval_train(
    data: Path, repo: Path, online: str, out: Path, objectives: tuple[str, ...], end: date | None, epochs: int
) -> None:
    """Train the two-tower model once per objective on Feast point-in-time user features."""
    from adprior.store import StoreConfig
    from retrieval.config import OBJECTIVES, RetrievalConfig
    from retrieval.train import train as run_train

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
@_retrieval_options("Two-tower model(s) to serve with (repeat; default: impression).")
@click.option(
    "--llm-quota",
    "llm_quotas",
    type=int,
    multiple=True,
    help="Quota(s) of the filtered generators, heuristic and LLM alike, to sweep (repeat; default: 50).",
)
@click.option(
    "--ranking-models",
    type=click.Path(path_type=Path),
    default=Path("runs/ranking/models"),
    show_default=True,
    help="Trained ranking run that orders the blend ('none': no ranker).",
)
@click.option("--aa", is_flag=True, help="A/A: serve every arm like control (checks the harness).")
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
    """Simulated online A/B, three arms: control (two-tower + popularity), + the generator filtered to the
    heuristic control's advertisers, + the same generator filtered to the LLM's (same quota)."""
    from adprior.store import StoreConfig
    from retrieval.ab_report import write_report
    from retrieval.abtest import run_ab
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
    report = write_report(res, cfg, command_line(), Path(out) / ("aa" if aa else "ab"))
    t = Table(title="A/B, three arms: paired counterfactual, expected outcomes (all users)")
    for c in ("objective", "quota", "pair", "RoAS", "conversions/user", "CTR", "advertisers/user"):
        t.add_column(c, justify="right")
    for r in res["runs"]:
        for name, p in r["pairs"].items():
            c = p["paired_expected"]
            t.add_row(
                r["objective"],
                str(r["llm_quota"]),
                name,
                *(
                    f"{c[m]['rel_change']:+.1%} (p={c[m]['p_value']:.3f})"
                    for m in ("roas", "conversions_per_user", "ctr", "advertisers_per_user")
                ),
            )
    console.print(t)
    console.print(f"report: {report}")
