"""Paper Table 5: ΔLoss, ΔAUC, ΔPR-AUC of the LLM-feature model over the baseline, with intervals.

Deltas are relative, as in the paper: ``(metric_llm - metric_baseline) / metric_baseline`` in %.
Intervals are user-level bootstrap percentile intervals (``scipy.stats.bootstrap`` over users; each
resample takes all test impressions of the drawn users, both models scored on the same rows), since
impressions of one user are not independent.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import bootstrap
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from ranking.config import RankingConfig

log = logging.getLogger(__name__)

METRICS = ("loss", "auc", "pr_auc")


def metrics(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """[log loss, ROC AUC, PR AUC (average precision)]; AUCs are NaN when only one class is present."""
    y = np.asarray(y)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    loss = log_loss(y, p, labels=[0, 1])
    if y.min() == y.max():
        return np.array([loss, np.nan, np.nan])
    return np.array([loss, roc_auc_score(y, p), average_precision_score(y, p)])


def relative_deltas(y: np.ndarray, p_base: np.ndarray, p_llm: np.ndarray) -> np.ndarray:
    """Relative change in % of [loss, AUC, PR-AUC], LLM model over baseline."""
    mb, ml = metrics(y, p_base), metrics(y, p_llm)
    return (ml - mb) / mb * 100.0


def compare(
    y: np.ndarray,
    p_base: np.ndarray,
    p_llm: np.ndarray,
    users: np.ndarray,
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """Metrics of both models and relative deltas with user-bootstrap intervals.

    Args:
        y: 0/1 labels of the test impressions.
        p_base, p_llm: the two models' probabilities on the same rows.
        users: user id of each row (the resampling unit).
        resamples: bootstrap resamples.
        confidence: interval level (0.95).
        seed: bootstrap seed.

    Returns:
        ``{"n", "positives", "users", "baseline": {metric: v}, "llm": {...}, "delta_pct": {metric: v},
        "ci_pct": {metric: [lo, hi]}, "p_improve": {metric: share of resamples where the LLM model is
        better}}``.
    """
    y, p_base, p_llm = np.asarray(y), np.asarray(p_base), np.asarray(p_llm)
    codes, uniq = pd.factorize(pd.Series(users))
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniq) + 1))
    rows_of = [order[bounds[i] : bounds[i + 1]] for i in range(len(uniq))]

    def stat(sample: np.ndarray) -> np.ndarray:
        idx = np.concatenate([rows_of[int(u)] for u in sample])
        return relative_deltas(y[idx], p_base[idx], p_llm[idx])

    point = relative_deltas(y, p_base, p_llm)
    res = bootstrap(
        (np.arange(len(uniq)),),
        stat,
        vectorized=False,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        random_state=seed,
    )
    dist = np.asarray(res.bootstrap_distribution)  # (3, resamples)
    better = np.array([dist[0] < 0, dist[1] > 0, dist[2] > 0])
    valid = ~np.isnan(dist)
    return {
        "n": len(y),
        "positives": int(y.sum()),
        "users": len(uniq),
        "baseline": dict(zip(METRICS, map(float, metrics(y, p_base)), strict=True)),
        "llm": dict(zip(METRICS, map(float, metrics(y, p_llm)), strict=True)),
        "delta_pct": dict(zip(METRICS, map(float, point), strict=True)),
        "ci_pct": {
            m: [
                float(np.nanquantile(dist[i], (1 - confidence) / 2)),
                float(np.nanquantile(dist[i], 1 - (1 - confidence) / 2)),
            ]
            for i, m in enumerate(METRICS)
        },
        "p_improve": {
            m: float(better[i][valid[i]].mean()) if valid[i].any() else float("nan")
            for i, m in enumerate(METRICS)
        },
    }


def _fmt(d: float, ci: list[float]) -> str:
    if np.isnan(d):
        return "n/a"
    return f"{d:+.2f}% [{ci[0]:+.2f}, {ci[1]:+.2f}]"


def write_report(results: dict[str, Any], cfg: RankingConfig, command: str, out: Path) -> Path:
    """``report.md`` + ``table5.png`` (forest plot of the deltas) from :func:`ranking.train.evaluate`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = results["dataset"]
    lines = [
        "# Ranking with LLM features (paper Table 5 analogue)",
        "",
        f"Command: `{command}`",
        "",
        "Config: `" + json.dumps(results["config"], default=str) + "`",
        "",
        f"Impressions {ds['impressions']:,} from {ds['users']} users, {ds['start'][:10]} to {ds['end'][:10]}; "
        f"share with an LLM prediction in force: {ds.get('llm_has_prediction') or 0:.3f}.",
        "",
        "| split | rows | users | clicked | ctcvr positives | vtcvr positives |",
        "|---|---|---|---|---|---|",
    ]
    for s, v in ds["splits"].items():
        lines.append(f"| {s} | {v['rows']:,} | {v['users']} | {v['clicked']} | {v['ctcvr']} | {v['vtcvr']} |")
    lines += [
        "",
        "## Table 5: relative change of the LLM-feature model over the baseline (test split)",
        "",
        f"Relative change in %, with user-bootstrap {cfg.confidence:.0%} intervals ({cfg.bootstrap_resamples} "
        "resamples). Loss: lower is better; AUC and PR-AUC: higher is better. Paper (ctcvr / vtcvr): "
        "ΔLoss -0.12% / -0.64%, ΔAUC +0.06% / +0.09%, ΔPR-AUC +0.71% / +1.64%.",
        "",
        "| task | library | Δ Loss | Δ AUC | Δ PR-AUC | P(LLM better): loss / AUC / PR-AUC |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in results["comparisons"].items():
        task, lib = key.split("/")
        d, ci, pi = r["delta_pct"], r["ci_pct"], r["p_improve"]
        lines.append(
            f"| {task} | {lib} | {_fmt(d['loss'], ci['loss'])} | {_fmt(d['auc'], ci['auc'])} | "
            f"{_fmt(d['pr_auc'], ci['pr_auc'])} | {pi['loss']:.2f} / {pi['auc']:.2f} / {pi['pr_auc']:.2f} |"
        )
    lines += [
        "",
        "## Absolute test metrics",
        "",
        "| task | library | rows | positives | loss base / LLM | AUC base / LLM | PR-AUC base / LLM | rounds base / LLM |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in results["comparisons"].items():
        task, lib = key.split("/")
        b, m = r["baseline"], r["llm"]
        rounds = results["rounds"][key]
        lines.append(
            f"| {task} | {lib} | {r['n']:,} | {r['positives']} | {b['loss']:.5f} / {m['loss']:.5f} | "
            f"{b['auc']:.4f} / {m['auc']:.4f} | {b['pr_auc']:.4f} / {m['pr_auc']:.4f} | "
            f"{rounds['baseline']} / {rounds['llm']} |"
        )
    lines += ["", "## Importance of the LLM features (share of total gain in the LLM-feature model)", ""]
    llm_cols = sorted({c for imp in results["importance"].values() for c in imp if c.startswith("llm_")})
    lines += [
        "| task | library | " + " | ".join(llm_cols) + " | all LLM |",
        "|---|---|" + "---|" * (len(llm_cols) + 1),
    ]
    for key, imp in results["importance"].items():
        task, lib = key.split("/")
        tot = sum(imp.get(c, 0.0) for c in llm_cols)
        lines.append(
            f"| {task} | {lib} | "
            + " | ".join(f"{imp.get(c, 0.0):.3f}" for c in llm_cols)
            + f" | {tot:.3f} |"
        )
    lines += ["", "![Table 5](table5.png)", ""]
    (out / "report.md").write_text("\n".join(lines))

    keys = list(results["comparisons"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.6 * len(keys) + 1.5), sharey=True)
    for ax, m, title in zip(axes, METRICS, ("Δ Loss % (lower better)", "Δ AUC %", "Δ PR-AUC %"), strict=True):
        for i, k in enumerate(keys):
            r = results["comparisons"][k]
            d, (lo, hi) = r["delta_pct"][m], r["ci_pct"][m]
            if not np.isnan(d):
                ax.errorbar(d, i, xerr=[[d - lo], [hi - d]], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(title)
        ax.set_yticks(range(len(keys)), keys)
    fig.suptitle("LLM features vs baseline (test split, user-bootstrap 95% CI)")
    fig.tight_layout()
    fig.savefig(out / "table5.png", dpi=110)
    plt.close(fig)
    return out / "report.md"
