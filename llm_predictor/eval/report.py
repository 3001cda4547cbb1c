"""One markdown report (+ PNG charts) from evaluation runs, each table headed by its exact command.

Every ``<run>/eval.json`` written by :func:`llm_predictor.eval.evaluate.evaluate` carries the command line
and configuration that produced it; the report copies both, so every number in it can be rerun.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from llm_predictor.eval.markdown import reranker_note
from llm_predictor.eval.stats import paired_diff_ci

matplotlib.use("Agg")
import matplotlib.pyplot as plt


@dataclass
class ReportConfig:
    """Which evaluation runs go into the report, and where it is written."""

    runs: list[Path] = field(default_factory=list)  # folders holding eval.json (one section each)
    out: Path = Path("runs/report")  # report.md and one PNG per run go here
    title: str = "adprior: offline evaluation report"  # first heading
    sets: tuple[str, ...] = ("V1", "V0")  # example sets shown
    intro: Path | None = None  # markdown file placed under the title (sizes, data preparation, reading)


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _section(name: str, ev: dict, cfg: ReportConfig, png: Path) -> list[str]:
    ks = ev.get("ks", [1, 5, 20])
    sets = [s for s in cfg.sets if ev.get("n_rows", {}).get(s)]
    lines = [
        f"## {name}",
        "",
        f"Command: `{ev.get('command', '?')}`",
        "",
        f"Anchor dates: {', '.join(ev.get('anchor_dates', []))}; labelled eval rows: "
        + ", ".join(f"{s} = {ev['n_rows'][s]}" for s in sets),
        "",
    ]
    first, kmax = (sets[0] if sets else "V1"), max(ks)
    head = (
        ["method"]
        + [f"{s} R@{k}" for s in sets for k in ks]
        + [f"{first} R@{kmax} 95% CI"]
        + ["valid fmt", "halluc.", "ceiling"]
    )
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = dict(ev.get("methods", {}))  # baselines, LLMs and 'gbdt' / 'gbdt + llm' combinations
    for method, m in rows.items():
        rec = m.get("recall", {})
        cells = [_fmt(rec.get(s, {}).get(f"R@{k}")) for s in sets for k in ks]
        ci = (m.get("recall_ci") or {}).get(first, {}).get(f"R@{kmax}")
        cells.append(f"[{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "–")
        fmt = (m.get("format") or {}).get(first) or {}  # LLM rows only
        cells += [
            _fmt(fmt.get("valid_format_rate")),
            _fmt(fmt.get("hallucination_rate")),
            _fmt((m.get("ceiling") or {}).get(first)),
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Ceiling ({first}): share of labels the method can reach at all: the reranker's candidate set "
        "(gbdt rows) or the advertisers the prompt offers, active advertisers + preset pool (llm rows).",
    ]
    for method, m in rows.items():
        note = reranker_note(method, m)
        if note:
            lines += ["", note]
    paired = [r for r in ev.get("paired", []) if r["set"] == first]
    if paired:
        lines += [
            "",
            f"Paired on the same {first} rows (exact McNemar): a only / b only = rows only one of the two "
            "hits; best non-LLM = the best baseline or gbdt at that K on these rows.",
            "",
            "| a | b | K | R@K a − b | 95 % CI (paired) | a only | b only | p |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in paired:  # runs written before the interval was stored get it from their counts
            ci = r.get("ci") or paired_diff_ci(r["a_only"], r["b_only"], r["n"])
            lines.append(
                f"| {r['a']} | {r['b']} | {r['k']} | {r['diff']:+.3f} | "
                f"{f'[{ci[0]:+.3f}, {ci[1]:+.3f}]' if ci else '–'} | {r['a_only']} | {r['b_only']} | "
                f"{r['p']:.3f} |"
            )
    lines += ["", f"![{name}]({png.name})", ""]
    _chart(rows, sets[0] if sets else "V1", ks, png, name)
    return lines


def _chart(rows: dict, s: str, ks: list[int], png: Path, title: str) -> None:
    names = list(rows)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 3.6))
    width = 0.8 / max(1, len(ks))
    for j, k in enumerate(ks):
        vals = [rows[n].get("recall", {}).get(s, {}).get(f"R@{k}") or 0.0 for n in names]
        ax.bar([i + j * width for i in range(len(names))], vals, width, label=f"R@{k}")
    ax.set_xticks([i + width * (len(ks) - 1) / 2 for i in range(len(names))], names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"Recall ({s})")
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def _lineage(model: str) -> list[tuple[str, dict]]:
    """``model`` and the trained folders it started from (``config.model`` of each ``train_summary.json``), each
    with its summary, oldest first; the chain stops at a folder without a summary (a base model)."""
    chain: list[tuple[str, dict]] = []
    cur: str | None = model
    while cur and cur not in (c for c, _ in chain) and (Path(cur) / "train_summary.json").exists():
        summary = json.loads((Path(cur) / "train_summary.json").read_text())
        chain.append((cur, summary))
        cur = summary.get("config", {}).get("model")
    return chain[::-1]


def _models_section(evals: list[dict]) -> list[str]:
    """One row per trained model folder (one holding a ``train_summary.json``, written by ``adprior train`` and
    ``adprior sid cpt``) that an eval scored or that such a model was trained from, parents first."""
    rows: list[str] = []
    seen: set[str] = set()
    for ev in evals:
        for model, summary in [a for m in ev.get("config", {}).get("models", []) for a in _lineage(m)]:
            if model in seen:
                continue
            seen.add(model)
            m = summary.get("metrics", {})
            label, written = f"`{model}`", m.get("model_dir")
            if (
                written and Path(written).resolve() != Path(model).resolve()
            ):  # a copy: where the command wrote it
                label += f" (written as `{written}`, then copied)"
            if m.get("stage") == "grpo":
                curve = f"reward {_fmt(m.get('reward_first'))} -> {_fmt(m.get('reward_last'))}"
            else:
                curve = f"loss {_fmt(m.get('train_loss_first'))} -> {_fmt(m.get('train_loss_last'))}"
            rows.append(
                f"| {label} | {m.get('stage', '?')} | {m.get('template', '?')} | {m.get('steps', '?')} | "
                f"{m.get('examples_seen', '?')} | {curve} | {_fmt(m.get('s_per_step'))} | "
                f"`{summary.get('command') or '(not recorded)'}` |"
            )
    if not rows:
        return []
    return [
        "## Trained models",
        "",
        "| model | stage | template | steps | examples seen | curve | s/step | command |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def build_report(cfg: ReportConfig) -> Path:
    """Write ``<out>/report.md`` and one PNG per run; return the markdown path.

    Args:
        cfg: the runs to include (folders with eval.json), the output folder, the title and sets.
    """
    cfg.out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {cfg.title}",
        "",
        "Each section is one `adprior eval` run; its command reproduces the numbers. Baselines and "
        "models are scored on the same labelled eval rows.",
        "",
    ]
    if cfg.intro is not None:
        lines += [cfg.intro.read_text().strip(), ""]
    evals = []
    for run in cfg.runs:
        path = Path(run) / "eval.json"
        if not path.exists():
            raise FileNotFoundError(f"no eval.json in {run}")
        evals.append(json.loads(path.read_text()))
    lines += _models_section(evals)
    names = [Path(run).name for run in cfg.runs]
    for run, ev in zip(cfg.runs, evals, strict=True):
        name = Path(run).name
        if names.count(name) > 1:  # runs/eval/llm_world/table3 and runs/eval/llm_amazon/table3: keep both
            name = f"{Path(run).parent.name}_{name}"
        lines += _section(name, ev, cfg, cfg.out / f"{name}.png")
    md = cfg.out / "report.md"
    md.write_text("\n".join(lines))
    return md
